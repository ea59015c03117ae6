//! Hashes that name revisions: the pod-template hash (ReplicaSet names, the
//! `rollouts-pod-template-hash` label) and the step hash (`status.currentStepHash`).
//!
//! Both are 32-bit FNV-1a over a canonical serialization, printed in decimal and mapped onto
//! Kubernetes' "safe" alphabet (no vowels, no look-alike characters), as Kubernetes and Argo
//! Rollouts do. The canonical serialization of the pod template is its JSON with map keys in
//! sorted order, so the same template always yields the same hash; a collision count, when
//! present, is appended as four little-endian bytes to move away from a name already taken.
//! The step hash is FNV-1a over the JSON of the steps exactly as Argo computes it, so a
//! Rollout handed over from Argo Rollouts keeps its place in the steps.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::names::POD_TEMPLATE_HASH_LABEL;
use crate::api::CanaryStep;

/// Kubernetes' safe alphabet for generated name suffixes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a.
#[derive(Clone, Copy, Debug)]
pub struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(0x811c_9dc5)
    }
}

impl Fnv32a {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u32::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    pub fn finish(self) -> u32 {
        self.0
    }
}

/// Maps each character of `text` onto the safe alphabet, as Kubernetes'
/// `rand.SafeEncodeString` does with the decimal digits of a hash.
pub fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The pod-template hash of a template, ignoring any `rollouts-pod-template-hash` label it
/// already carries.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::default();
    let carries_hash_label = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .is_some_and(|l| l.contains_key(POD_TEMPLATE_HASH_LABEL));
    let bytes = if carries_hash_label {
        let mut clean = template.clone();
        if let Some(labels) = clean.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        canonical_json(&clean)
    } else {
        canonical_json(template)
    };
    hasher.write(&bytes);
    if let Some(count) = collision_count {
        hasher.write(&count.to_le_bytes());
    }
    safe_encode(&hasher.finish().to_string())
}

/// The hash of a canary's steps, as Argo writes it to `status.currentStepHash`.
pub fn step_hash(steps: Option<&[CanaryStep]>) -> String {
    let mut hasher = Fnv32a::default();
    hasher.write(&canonical_json(&steps));
    safe_encode(&hasher.finish().to_string())
}

/// JSON of an API value. The API types hold maps as `BTreeMap`s, so the output is canonical.
fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data structures to a Vec cannot fail: there is no I/O and every map
    // key is a string. An empty result would still hash deterministically.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::RolloutPause;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([(
                    "app".to_string(),
                    "guestbook".to_string(),
                )])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv32a::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0x811c_9dc5);
        assert_eq!(hash("a"), 0xe40c_292c);
        assert_eq!(hash("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_uses_the_kubernetes_alphabet() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '9' is 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        let hash = pod_template_hash(&template("nginx:1.19"), None);
        assert!(!hash.is_empty() && hash.len() <= 10);
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{hash}");
    }

    #[test]
    fn template_hash_is_stable_and_sensitive() {
        let a = pod_template_hash(&template("nginx:1.19"), None);
        assert_eq!(a, pod_template_hash(&template("nginx:1.19"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1.20"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1.19"), Some(1)));
        let mut labelled = template("nginx:1.19");
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), a.clone());
        assert_eq!(
            a,
            pod_template_hash(&labelled, None),
            "the hash label itself does not count"
        );
    }

    #[test]
    fn step_hash_follows_the_steps() {
        let steps = vec![
            CanaryStep {
                set_weight: Some(20),
                ..Default::default()
            },
            CanaryStep {
                pause: Some(RolloutPause { duration: None }),
                ..Default::default()
            },
        ];
        let h = step_hash(Some(&steps));
        assert_eq!(h, step_hash(Some(&steps)));
        assert_ne!(h, step_hash(Some(&steps[..1])));
        assert_ne!(step_hash(None), step_hash(Some(&[])));
    }
}
