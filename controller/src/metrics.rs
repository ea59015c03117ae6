//! Ramp's Prometheus metrics, under Argo Rollouts' names so Argo's Grafana dashboard works:
//!
//! | metric | labels |
//! |---|---|
//! | `rollout_info` (gauge, 1 per Rollout) | `namespace`, `name`, `strategy`, `traffic_router`, `phase` |
//! | `rollout_info_replicas_{available,unavailable,desired,updated}` | `namespace`, `name` |
//! | `rollout_reconcile` (histogram, seconds) | `namespace`, `name` |
//! | `rollout_reconcile_error` (counter) | `namespace`, `name` |
//! | `rollout_events_total` | `namespace`, `name`, `type`, `reason` |
//! | `controller_clientset_k8s_request_total` | `kind`, `namespace`, `name`, `verb`, `status_code` |
//! | `process_*` | resident and virtual memory, CPU seconds, open fds, start time |
//!
//! The `rollout_info*` families are computed at scrape time from the controller's cache of
//! Rollouts, so a deleted Rollout disappears from them at once and nothing per Rollout is
//! kept in memory between scrapes. The request counter is a layer on the Kubernetes client.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Rollout;
use crate::traffic::configured_router;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub namespace: String,
    pub name: String,
    pub r#type: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub verb: String,
    pub status_code: String,
}

/// Reconcile buckets (seconds): Argo's, from 10 ms to 10 s.
const RECONCILE_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// The metrics the Rollout controller records.
#[derive(Clone)]
pub struct RolloutMetrics {
    reconcile: Family<RolloutLabels, Histogram, fn() -> Histogram>,
    reconcile_errors: Arc<Mutex<std::collections::BTreeMap<(String, String), u64>>>,
    events: Family<EventLabels, Counter>,
}

impl fmt::Debug for RolloutMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RolloutMetrics")
    }
}

impl Default for RolloutMetrics {
    fn default() -> Self {
        RolloutMetrics {
            reconcile: Family::new_with_constructor(reconcile_histogram),
            reconcile_errors: Arc::default(),
            events: Family::default(),
        }
    }
}

impl RolloutMetrics {
    /// Registers the families, plus the `rollout_info*` families computed from `rollouts`.
    pub fn register(&self, registry: &mut Registry, rollouts: Store<Rollout>) {
        registry.register(
            "rollout_reconcile",
            "Rollout reconciliation performance in seconds.",
            self.reconcile.clone(),
        );
        registry.register(
            "rollout_events",
            "Events sent by the Rollout controller.",
            self.events.clone(),
        );
        registry.register_collector(Box::new(ReconcileErrors(self.reconcile_errors.clone())));
        registry.register_collector(Box::new(RolloutInfo(rollouts)));
    }

    /// Times a reconcile until the returned guard is dropped.
    pub fn reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self
                .reconcile
                .get_or_create(&RolloutLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                })
                .clone(),
            started: Instant::now(),
        }
    }

    pub fn reconcile_error(&self, namespace: &str, name: &str) {
        if let Ok(mut errors) = self.reconcile_errors.lock() {
            *errors
                .entry((namespace.to_string(), name.to_string()))
                .or_default() += 1;
        }
    }

    pub fn event(&self, namespace: &str, name: &str, type_: &str, reason: &str) {
        let labels = EventLabels {
            namespace: namespace.into(),
            name: name.into(),
            r#type: type_.into(),
            reason: reason.into(),
        };
        self.events.get_or_create(&labels).inc();
    }

    /// Forgets a deleted Rollout's series.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.reconcile.remove(&RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        });
        if let Ok(mut errors) = self.reconcile_errors.lock() {
            errors.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// `rollout_reconcile_error`, exported under Argo's exact name (an untyped sample: typed
/// counters always gain a `_total` suffix).
#[derive(Debug)]
struct ReconcileErrors(Arc<Mutex<std::collections::BTreeMap<(String, String), u64>>>);

impl Collector for ReconcileErrors {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Ok(errors) = self.0.lock() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "rollout_reconcile_error",
            "Error occurring during the rollout reconciliation.",
            None,
            MetricType::Unknown,
        )?;
        for ((namespace, name), count) in errors.iter() {
            let labels = RolloutLabels {
                namespace: namespace.clone(),
                name: name.clone(),
            };
            let metric = ConstGauge::new(i64::try_from(*count).unwrap_or(i64::MAX));
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    namespace: String,
    name: String,
    strategy: String,
    traffic_router: String,
    phase: String,
}

/// `rollout_info` and `rollout_info_replicas_*`, from the Rollout cache at scrape time.
struct RolloutInfo(Store<Rollout>);

impl fmt::Debug for RolloutInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RolloutInfo")
    }
}

impl Collector for RolloutInfo {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let rollouts = self.0.state();
        let mut info = encoder.encode_descriptor(
            "rollout_info",
            "Information about rollout.",
            None,
            MetricType::Gauge,
        )?;
        for rollout in &rollouts {
            let strategy = rollout.spec.strategy.as_ref();
            let (strategy_name, router) = match strategy {
                Some(s) if s.blue_green.is_some() => ("blueGreen", ""),
                Some(s) if s.canary.is_some() => {
                    let router = s
                        .canary
                        .as_ref()
                        .and_then(|c| c.traffic_routing.as_ref())
                        .and_then(configured_router);
                    ("canary", router.unwrap_or(""))
                }
                _ => ("none", ""),
            };
            let phase = rollout
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| p.as_str())
                .unwrap_or("");
            let labels = InfoLabels {
                namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
                name: rollout.metadata.name.clone().unwrap_or_default(),
                strategy: strategy_name.into(),
                traffic_router: router.into(),
                phase: phase.into(),
            };
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        type Reading = fn(&Rollout) -> i64;
        let families: [(&str, &str, Reading); 4] = [
            (
                "rollout_info_replicas_available",
                "The number of available replicas per rollout.",
                |r| {
                    i64::from(
                        r.status
                            .as_ref()
                            .and_then(|s| s.available_replicas)
                            .unwrap_or(0),
                    )
                },
            ),
            (
                "rollout_info_replicas_unavailable",
                "The number of unavailable replicas per rollout.",
                |r| {
                    let status = r.status.as_ref();
                    let total = status.and_then(|s| s.replicas).unwrap_or(0);
                    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
                    i64::from((total - available).max(0))
                },
            ),
            (
                "rollout_info_replicas_desired",
                "The number of desired replicas per rollout.",
                |r| i64::from(r.spec.replicas.unwrap_or(1)),
            ),
            (
                "rollout_info_replicas_updated",
                "The number of updated replicas per rollout.",
                |r| {
                    i64::from(
                        r.status
                            .as_ref()
                            .and_then(|s| s.updated_replicas)
                            .unwrap_or(0),
                    )
                },
            ),
        ];
        for (name, help, read) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for rollout in &rollouts {
                let labels = RolloutLabels {
                    namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
                    name: rollout.metadata.name.clone().unwrap_or_default(),
                };
                ConstGauge::new(read(rollout)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Counts every request the Kubernetes client makes (`controller_clientset_k8s_request_total`).
///
/// The `name` label names objects that come and go (each revision's ReplicaSet and
/// AnalysisRuns), so the series of an object are dropped once a request finds it deleted (a
/// DELETE that succeeds or answers 404, a GET that answers 404): without that, every
/// revision a long-lived controller rolls out would add series forever.
#[derive(Clone, Default)]
pub struct RequestCounter {
    requests: Family<RequestLabels, Counter>,
    /// The label sets recorded for each named object, so they can be dropped together.
    objects: Arc<Mutex<HashMap<ObjectKey, HashSet<RequestLabels>>>>,
}

/// `(kind, namespace, name)` of a request's object.
type ObjectKey = (String, String, String);

impl RequestCounter {
    pub fn register(registry: &mut Registry) -> RequestCounter {
        let counter = RequestCounter::default();
        registry.register(
            "controller_clientset_k8s_request",
            "Number of kubernetes requests executed during application reconciliation.",
            counter.requests.clone(),
        );
        counter
    }

    /// Counts one request, then forgets the object's series if the request found it gone.
    fn count(&self, labels: RequestLabels) {
        if labels.name.is_empty() {
            self.requests.get_or_create(&labels).inc();
            return;
        }
        let key = (
            labels.kind.clone(),
            labels.namespace.clone(),
            labels.name.clone(),
        );
        let gone = match (labels.verb.as_str(), labels.status_code.as_str()) {
            ("Delete", code) => code.starts_with('2') || code == "404",
            ("Get", "404") => true,
            _ => false,
        };
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        if gone {
            for recorded in objects.remove(&key).into_iter().flatten() {
                self.requests.remove(&recorded);
            }
            self.requests.remove(&labels);
            return;
        }
        self.requests.get_or_create(&labels).inc();
        objects.entry(key).or_default().insert(labels);
    }

    /// Named objects with series, for tests and the footprint figures.
    pub fn objects(&self) -> usize {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl RequestLabels {
    /// Reads kind, namespace, name and verb off a request to the API server.
    pub fn of(method: &http::Method, path: &str, status: u16) -> RequestLabels {
        let path = path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // /api/v1/... or /apis/<group>/<version>/...
        let rest = match parts.first() {
            Some(&"api") => parts.get(2..).unwrap_or_default(),
            Some(&"apis") => parts.get(3..).unwrap_or_default(),
            _ => &[],
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (*namespace, rest),
            _ => ("", rest),
        };
        let (kind, name) = match rest {
            [kind] => (*kind, ""),
            [kind, name, ..] => (*kind, *name),
            _ => ("", ""),
        };
        let verb = match (method.as_str(), name.is_empty()) {
            ("GET", true) => "List",
            ("GET", false) => "Get",
            ("POST", _) => "Create",
            ("PUT", _) => "Update",
            ("PATCH", _) => "Patch",
            ("DELETE", _) => "Delete",
            (other, _) => other,
        };
        RequestLabels {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            verb: verb.to_string(),
            status_code: status.to_string(),
        }
    }
}

/// A tower layer counting requests, for `kube::client::ClientBuilder::with_layer`.
#[derive(Clone)]
pub struct CountRequests(pub RequestCounter);

impl<S> tower::Layer<S> for CountRequests {
    type Service = CountedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedService {
            inner,
            counter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountedService<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B, R> tower::Service<http::Request<B>> for CountedService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().clone();
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let watch = request
            .uri()
            .query()
            .is_some_and(|q| q.contains("watch=true"));
        let counter = self.counter.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            let status = response.as_ref().map_or(0, |r| r.status().as_u16());
            let mut labels = RequestLabels::of(&method, &path, status);
            if watch {
                labels.verb = "Watch".into();
            }
            counter.count(labels);
            response
        })
    }
}

/// `process_*` metrics of this process, read from `/proc` at scrape time.
#[derive(Debug)]
pub struct ProcessMetrics {
    start_time: f64,
}

impl ProcessMetrics {
    pub fn register(registry: &mut Registry) {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        registry.register_collector(Box::new(ProcessMetrics { start_time }));
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let page = 4096.0;
        let ticks = 100.0;
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let mut pages = statm
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(0.0));
        let virtual_bytes = pages.next().unwrap_or(0.0) * page;
        let resident_bytes = pages.next().unwrap_or(0.0) * page;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may contain spaces) start at index 2.
        let after_command = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<f64> = after_command
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let cpu_seconds = (fields.get(11).copied().unwrap_or(0.0)
            + fields.get(12).copied().unwrap_or(0.0))
            / ticks;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0) as f64;
        let values = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricType::Gauge,
                resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge,
                self.start_time,
            ),
            (
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                MetricType::Unknown,
                cpu_seconds,
            ),
        ];
        for (name, help, kind, value) in values {
            let metric = ConstGauge::new(value);
            let family = encoder.encode_descriptor(name, help, None, kind)?;
            metric.encode(family)?;
        }
        Ok(())
    }
}

/// The whole registry as Prometheus text (format 0.0.4).
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(counter: &RequestCounter, method: http::Method, path: &str, status: u16) {
        counter.count(RequestLabels::of(&method, path, status));
    }

    fn exposition(counter: &RequestCounter) -> String {
        let mut registry = Registry::default();
        registry.register("requests", "test", counter.requests.clone());
        render(&registry).expect("renders")
    }

    #[test]
    fn a_deleted_objects_series_are_dropped_and_others_kept() {
        let counter = RequestCounter::default();
        let rs = "/apis/apps/v1/namespaces/shop/replicasets/web-5d8f";
        request(&counter, http::Method::GET, rs, 200);
        request(&counter, http::Method::PATCH, rs, 200);
        request(&counter, http::Method::PATCH, rs, 409);
        request(
            &counter,
            http::Method::GET,
            "/apis/apps/v1/namespaces/shop/replicasets/web-77aa",
            200,
        );
        request(
            &counter,
            http::Method::GET,
            "/apis/apps/v1/namespaces/shop/replicasets",
            200,
        );
        assert_eq!(counter.objects(), 2);
        assert!(exposition(&counter).contains("name=\"web-5d8f\""));

        request(&counter, http::Method::DELETE, rs, 200);
        let text = exposition(&counter);
        assert!(!text.contains("web-5d8f"), "{text}");
        assert!(text.contains("name=\"web-77aa\""), "{text}");
        assert!(text.contains("verb=\"List\""), "{text}");
        assert_eq!(counter.objects(), 1);

        // An object found gone by a GET is forgotten too; a failed DELETE keeps it.
        request(
            &counter,
            http::Method::DELETE,
            "/apis/apps/v1/namespaces/shop/replicasets/web-77aa",
            500,
        );
        assert_eq!(counter.objects(), 1);
        request(
            &counter,
            http::Method::GET,
            "/apis/apps/v1/namespaces/shop/replicasets/web-77aa",
            404,
        );
        assert_eq!(counter.objects(), 0);
        assert!(!exposition(&counter).contains("web-77aa"));
    }

    #[test]
    fn request_labels_from_paths() {
        let get = RequestLabels::of(
            &http::Method::GET,
            "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web",
            200,
        );
        assert_eq!(
            (
                get.kind.as_str(),
                get.namespace.as_str(),
                get.name.as_str(),
                get.verb.as_str()
            ),
            ("rollouts", "shop", "web", "Get")
        );
        let list = RequestLabels::of(
            &http::Method::GET,
            "/apis/apps/v1/replicasets?labelSelector=x",
            200,
        );
        assert_eq!(
            (
                list.kind.as_str(),
                list.namespace.as_str(),
                list.verb.as_str()
            ),
            ("replicasets", "", "List")
        );
        let patch = RequestLabels::of(
            &http::Method::PATCH,
            "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status",
            200,
        );
        assert_eq!((patch.name.as_str(), patch.verb.as_str()), ("web", "Patch"));
        let core = RequestLabels::of(
            &http::Method::POST,
            "/api/v1/namespaces/shop/pods/web-1/eviction",
            201,
        );
        assert_eq!(
            (
                core.kind.as_str(),
                core.name.as_str(),
                core.verb.as_str(),
                core.status_code.as_str()
            ),
            ("pods", "web-1", "Create", "201")
        );
    }
}
