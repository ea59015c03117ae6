//! Metric providers: where measurements come from.
//!
//! ```text
//!   metric (args resolved, Secrets included)
//!     ├─ prometheus ──PromQL (instant or range)──▶ Reading ─┐
//!     ├─ web ─────────HTTP + JSONPath────────────▶ Reading ─┼─ conditions ─▶ Measurement
//!     ├─ job ─────────create / watch / delete a Job ────────┴──────────────▶ Measurement
//!     └─ datadog, newRelic, … ─▶ Error "not supported yet" (never a pass)
//! ```
//!
//! A provider failure is an Error measurement carrying the reason; it never passes.

pub mod auth;
pub mod job;
pub mod prometheus;
pub mod web;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{AnalysisPhase, Measurement, Metric, MetricProvider};
use crate::expr::Value;
use crate::schedule::TaskKind;
use crate::validate::provider_names;
use crate::verdict::measurement_phase;

/// What a query provider measured, before the conditions judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// What conditions see as `result`.
    pub value: Value,
    /// The value as recorded in the measurement (`[0.02,0.03]`, `0.5`, `{"ok":true}`).
    pub recorded: String,
    /// Extra facts for the measurement (e.g. Prometheus warnings).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Why a provider could not measure. The text becomes the Error measurement's message.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "metric provider {0} is not supported yet by Ramp (supported: prometheus, web, job); the measurement is an Error, never a pass"
    )]
    Unsupported(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    Response(String),
    #[error("{0}")]
    Kubernetes(String),
}

/// The provider's type as Argo names it in metrics (`Prometheus`, `Web`, `Job`, …).
pub fn provider_type(provider: &MetricProvider) -> String {
    let types = [
        (provider.prometheus.is_some(), "Prometheus"),
        (provider.web.is_some(), "Web"),
        (provider.job.is_some(), "Job"),
        (provider.kayenta.is_some(), "Kayenta"),
        (provider.datadog.is_some(), "Datadog"),
        (provider.new_relic.is_some(), "NewRelic"),
        (provider.wavefront.is_some(), "Wavefront"),
        (provider.graphite.is_some(), "Graphite"),
        (provider.influxdb.is_some(), "Influxdb"),
        (provider.skywalking.is_some(), "SkyWalking"),
        (provider.cloud_watch.is_some(), "CloudWatch"),
    ];
    if let Some((_, name)) = types.iter().find(|(set, _)| *set) {
        return name.to_string();
    }
    match provider.plugin.as_ref().and_then(|p| p.keys().next()) {
        Some(plugin) => plugin.clone(),
        None => "Unknown".to_string(),
    }
}

/// The time a measurement starts or ends, to the nanosecond: the schedule is computed from
/// it, and the status keeps it whole (see `api::common::precise_time`).
pub fn timestamp_now() -> Timestamp {
    Timestamp::now()
}

/// An Error measurement: started at `started`, finished now, with the reason.
pub fn error_measurement(started: Option<Time>, error: &ProviderError) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        message: Some(error.to_string()),
        started_at: Some(started.unwrap_or_else(|| Time(timestamp_now()))),
        finished_at: Some(Time(timestamp_now())),
        ..Measurement::default()
    }
}

/// Judges a reading with the metric's conditions.
pub fn judge(metric: &Metric, reading: Reading, started: Time) -> Measurement {
    let finished = Some(Time(timestamp_now()));
    match measurement_phase(
        metric.success_condition.as_deref(),
        metric.failure_condition.as_deref(),
        &reading.value,
    ) {
        Ok(phase) => Measurement {
            phase,
            started_at: Some(started),
            finished_at: finished,
            value: Some(reading.recorded),
            metadata: reading.metadata,
            ..Measurement::default()
        },
        Err(e) => Measurement {
            phase: AnalysisPhase::Error,
            message: Some(format!("evaluating the condition: {e}")),
            started_at: Some(started),
            finished_at: finished,
            value: Some(reading.recorded),
            metadata: reading.metadata,
            ..Measurement::default()
        },
    }
}

/// The run a measurement belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// Everything providers need: API access, HTTP clients, the default Prometheus address.
#[derive(Clone)]
pub struct Providers {
    pub client: kube::Client,
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    prometheus_address: Option<String>,
}

/// How long a connection attempt may take before the measurement is an Error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Providers {
    /// `prometheus_address` is used by prometheus metrics that name no `address`.
    /// Needs a rustls crypto provider installed in the process.
    pub fn new(
        client: kube::Client,
        prometheus_address: Option<String>,
    ) -> Result<Providers, ProviderError> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| ProviderError::Config(format!("building the HTTP client: {e}")))
        };
        Ok(Providers {
            client,
            http: build(false)?,
            http_insecure: build(true)?,
            prometheus_address: prometheus_address.filter(|a| !a.is_empty()),
        })
    }

    fn http(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.http_insecure
        } else {
            &self.http
        }
    }

    /// What the metric result shows about the metric (the resolved Prometheus query), taken
    /// from the metric as resolved without Secret values.
    pub fn result_metadata(metric: &Metric) -> Option<BTreeMap<String, String>> {
        let query = metric.provider.prometheus.as_ref()?.query.clone()?;
        Some(BTreeMap::from([(
            "ResolvedPrometheusQuery".to_string(),
            query,
        )]))
    }

    /// Takes a new measurement, resumes the in-flight one, or terminates it.
    /// `job_number` numbers a Job measurement among the metric's measurements.
    pub async fn measure(
        &self,
        run: &RunRef,
        metric: &Metric,
        kind: TaskKind,
        in_flight: Option<&Measurement>,
        job_number: i32,
    ) -> Measurement {
        let provider = &metric.provider;
        let names = provider_names(provider);
        if names.len() != 1 {
            return error_measurement(
                in_flight.and_then(|m| m.started_at.clone()),
                &ProviderError::Config(format!(
                    "a metric needs exactly one provider, found {}",
                    names.len()
                )),
            );
        }
        let started = Time(timestamp_now());
        if let Some(prometheus) = &provider.prometheus {
            return match prometheus::measure(
                self.http(prometheus.insecure.unwrap_or(false)),
                prometheus,
                self.prometheus_address.as_deref(),
            )
            .await
            {
                Ok(reading) => judge(metric, reading, started),
                Err(e) => error_measurement(Some(started), &e),
            };
        }
        if let Some(web) = &provider.web {
            return match web::measure(self.http(web.insecure.unwrap_or(false)), web).await {
                Ok(reading) => judge(metric, reading, started),
                Err(e) => error_measurement(Some(started), &e),
            };
        }
        if provider.job.is_some() {
            return job::measure(&self.client, run, metric, kind, in_flight, job_number).await;
        }
        error_measurement(
            in_flight
                .and_then(|m| m.started_at.clone())
                .or(Some(started)),
            &ProviderError::Unsupported(names[0].clone()),
        )
    }

    /// Cleans up what dropped measurements left behind (their Jobs).
    pub async fn garbage_collect(&self, run: &RunRef, metric: &Metric, dropped: &[Measurement]) {
        if metric.provider.job.is_some() {
            job::delete_jobs_of(&self.client, &run.namespace, dropped).await;
        }
    }
}

/// Installs rustls' ring provider for tests that build HTTP clients (binaries do it in main).
#[cfg(test)]
pub(crate) fn install_crypto() {
    // Err means a provider is already installed, which is what is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DatadogMetric, PrometheusMetric, WebMetric};

    #[test]
    fn provider_types_use_argos_names() {
        let prometheus = MetricProvider {
            prometheus: Some(PrometheusMetric::default()),
            ..Default::default()
        };
        let web = MetricProvider {
            web: Some(WebMetric::default()),
            ..Default::default()
        };
        let datadog = MetricProvider {
            datadog: Some(DatadogMetric::default()),
            ..Default::default()
        };
        assert_eq!(provider_type(&prometheus), "Prometheus");
        assert_eq!(provider_type(&web), "Web");
        assert_eq!(provider_type(&datadog), "Datadog");
        assert_eq!(provider_type(&MetricProvider::default()), "Unknown");
    }

    #[test]
    fn judging_a_reading() {
        let metric = Metric {
            name: "m".into(),
            success_condition: Some("result[0] < 0.01".into()),
            ..Default::default()
        };
        let started = Time(timestamp_now());
        let reading = |v: f64| Reading {
            value: Value::from(vec![v]),
            recorded: format!("[{v}]"),
            metadata: None,
        };
        let ok = judge(&metric, reading(0.001), started.clone());
        assert_eq!(
            (ok.phase, ok.value.as_deref()),
            (AnalysisPhase::Successful, Some("[0.001]"))
        );
        assert!(ok.finished_at.is_some());
        let bad = judge(&metric, reading(0.5), started.clone());
        assert_eq!(bad.phase, AnalysisPhase::Failed);
        let broken = Metric {
            success_condition: Some("result[0] <".into()),
            ..metric
        };
        let err = judge(&broken, reading(0.5), started);
        assert_eq!(err.phase, AnalysisPhase::Error);
        assert!(
            err.message
                .unwrap()
                .starts_with("evaluating the condition: ")
        );
    }

    #[test]
    fn unsupported_providers_say_so() {
        let message = ProviderError::Unsupported("datadog".into()).to_string();
        assert!(
            message.contains("datadog is not supported yet"),
            "{message}"
        );
        assert!(message.contains("never a pass"));
    }
}
