//! Argo CD's application metrics, so its Grafana dashboards and alerts work on Ramp:
//! `argocd_app_info`, `argocd_app_sync_total`, `argocd_app_reconcile`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `argocd_app_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppInfoLabels {
    /// Application name.
    pub name: String,
    /// Application namespace.
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Repository URL.
    pub repo: String,
    /// Destination server.
    pub dest_server: String,
    /// Destination namespace.
    pub dest_namespace: String,
    /// `Synced`, `OutOfSync`, `Unknown`.
    pub sync_status: String,
    /// Health code.
    pub health_status: String,
    /// `true` when automated sync is on.
    pub autosync_enabled: String,
}

/// Labels of `argocd_app_sync_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// Application name.
    pub name: String,
    /// Application namespace.
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Destination server.
    pub dest_server: String,
    /// `Succeeded`, `Failed`, `Error`.
    pub phase: String,
}

/// Labels of `argocd_app_reconcile`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Application namespace.
    pub namespace: String,
    /// Destination server.
    pub dest_server: String,
}

/// The GitOps metric families. Cloning shares them.
#[derive(Clone)]
pub struct GitopsMetrics {
    app_info: Family<AppInfoLabels, Gauge>,
    sync_total: Family<SyncLabels, Counter>,
    reconcile: Family<ReconcileLabels, Histogram>,
    current_info: Arc<Mutex<HashMap<(String, String), AppInfoLabels>>>,
}

impl GitopsMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "argocd_app_info",
            "Information about applications",
            metrics.app_info.clone(),
        );
        registry.register(
            "argocd_app_sync",
            "Number of application syncs",
            metrics.sync_total.clone(),
        );
        registry.register(
            "argocd_app_reconcile",
            "Application reconciliation performance in seconds",
            metrics.reconcile.clone(),
        );
        metrics
    }

    /// Families not registered anywhere (for tests and embedding without metrics).
    pub fn unregistered() -> Self {
        GitopsMetrics {
            app_info: Family::default(),
            sync_total: Family::default(),
            reconcile: Family::new_with_constructor(|| {
                Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
            }),
            current_info: Arc::default(),
        }
    }

    /// Records an application's current state, replacing its previous series.
    pub fn set_app_info(&self, labels: AppInfoLabels) {
        let key = (labels.namespace.clone(), labels.name.clone());
        let mut current = self
            .current_info
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = current.get(&key) {
            if *previous == labels {
                return;
            }
            self.app_info.remove(previous);
        }
        self.app_info.get_or_create(&labels).set(1);
        current.insert(key, labels);
    }

    /// Forgets a deleted application.
    pub fn remove_app(&self, namespace: &str, name: &str) {
        let mut current = self
            .current_info
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = current.remove(&(namespace.to_owned(), name.to_owned())) {
            self.app_info.remove(&previous);
        }
    }

    /// Counts a finished sync.
    pub fn count_sync(&self, labels: SyncLabels) {
        self.sync_total.get_or_create(&labels).inc();
    }

    /// Starts timing a reconcile; the time is recorded when the timer is dropped.
    pub fn reconcile_timer(&self, labels: ReconcileLabels) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.reconcile.get_or_create(&labels).clone(),
            start: Instant::now(),
        }
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn info(sync: &str) -> AppInfoLabels {
        AppInfoLabels {
            name: "guestbook".into(),
            namespace: "argocd".into(),
            project: "default".into(),
            repo: "https://example.com/apps.git".into(),
            dest_server: "https://kubernetes.default.svc".into(),
            dest_namespace: "guestbook".into(),
            sync_status: sync.into(),
            health_status: "Healthy".into(),
            autosync_enabled: "true".into(),
        }
    }

    #[test]
    fn series_have_argo_cd_names_and_stale_labels_go_away() {
        let mut registry = Registry::default();
        let metrics = GitopsMetrics::register(&mut registry);
        metrics.set_app_info(info("OutOfSync"));
        metrics.set_app_info(info("Synced"));
        metrics.count_sync(SyncLabels {
            name: "guestbook".into(),
            namespace: "argocd".into(),
            project: "default".into(),
            dest_server: "https://kubernetes.default.svc".into(),
            phase: "Succeeded".into(),
        });
        drop(metrics.reconcile_timer(ReconcileLabels {
            namespace: "argocd".into(),
            dest_server: "in-cluster".into(),
        }));
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("argocd_app_info{name=\"guestbook\""),
            "{text}"
        );
        assert!(text.contains("sync_status=\"Synced\""), "{text}");
        assert!(!text.contains("sync_status=\"OutOfSync\""), "{text}");
        assert!(text.contains("argocd_app_sync_total{"), "{text}");
        assert!(text.contains("phase=\"Succeeded\"} 1"), "{text}");
        assert!(text.contains("argocd_app_reconcile_count{"), "{text}");
        metrics.remove_app("argocd", "guestbook");
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(!text.contains("argocd_app_info{"), "{text}");
    }
}
