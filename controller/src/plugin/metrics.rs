//! `ramp_rollout_set_weight` and `ramp_rollout_actual_weight` (gauges, labels `namespace`,
//! `name`; canary Rollouts only): the weights `kubectl ramp get rollout` shows, computed the
//! same way at scrape time from the controller's caches, so the Rollouts dashboard and the
//! plugin never disagree. Argo Rollouts exports no weights; these are Ramp's own.

use std::fmt;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::model::canary_weights;
use crate::api::Rollout;
use crate::rollout::gather::OwnedIndex;

/// The weight gauges over the controller's Rollout cache and ReplicaSet index.
pub struct WeightMetrics {
    rollouts: Store<Rollout>,
    replica_sets: OwnedIndex<ReplicaSet>,
}

impl fmt::Debug for WeightMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeightMetrics")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WeightLabels {
    namespace: String,
    name: String,
}

impl WeightMetrics {
    /// Adds both gauges to `registry`.
    pub fn register(
        registry: &mut Registry,
        rollouts: Store<Rollout>,
        replica_sets: OwnedIndex<ReplicaSet>,
    ) {
        registry.register_collector(Box::new(WeightMetrics {
            rollouts,
            replica_sets,
        }));
    }
}

impl Collector for WeightMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut samples = Vec::new();
        for rollout in self.rollouts.state() {
            let uid = rollout.metadata.uid.as_deref().unwrap_or_default();
            let owned = self.replica_sets.owned_by(uid);
            if let Some(weights) = canary_weights(&rollout, owned.iter().map(|rs| rs.as_ref())) {
                let labels = WeightLabels {
                    namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
                    name: rollout.metadata.name.clone().unwrap_or_default(),
                };
                samples.push((labels, weights));
            }
        }
        type Pick = fn((i32, i32)) -> i32;
        let families: [(&str, &str, Pick); 2] = [
            (
                "ramp_rollout_set_weight",
                "Canary weight (percent) the current step of a canary Rollout asks for.",
                |(set, _)| set,
            ),
            (
                "ramp_rollout_actual_weight",
                "Canary weight (percent) a canary Rollout has reached: the traffic router's, or the canary's share of available pods.",
                |(_, actual)| actual,
            ),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, weights) in &samples {
                ConstGauge::new(i64::from(pick(*weights))).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::plugin::model::tests::{canary_rollout, replica_set};

    #[test]
    fn weights_of_canaries_from_the_caches() {
        let (reader, mut writer) = store::<Rollout>();
        writer.apply_watcher_event(&Event::Apply(canary_rollout(1)));
        let index = OwnedIndex::<ReplicaSet>::default();
        index.apply(&Event::Apply(replica_set(
            "old",
            1,
            4,
            4,
            "i:1",
            "2024-05-01T10:00:00Z",
        )));
        index.apply(&Event::Apply(replica_set(
            "new",
            2,
            1,
            1,
            "i:2",
            "2024-05-01T10:04:00Z",
        )));
        let mut registry = Registry::default();
        WeightMetrics::register(&mut registry, reader, index);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("ramp_rollout_set_weight{namespace=\"shop\",name=\"web\"} 20\n"),
            "{text}"
        );
        // 1 canary pod of 5 available.
        assert!(
            text.contains("ramp_rollout_actual_weight{namespace=\"shop\",name=\"web\"} 20\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ramp_rollout_set_weight gauge"),
            "{text}"
        );
    }
}
