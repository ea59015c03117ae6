//! Argo CD's sync order: wave, then kind (Namespaces, CRDs, RBAC, … before workloads; kinds
//! not in the list after all listed ones), then name. A Namespace or CRD needed by an object of
//! an earlier wave is pulled into that wave, so it always exists first.

use std::collections::HashMap;

use super::desired::DesiredObject;

/// Kinds in the order they are applied; kinds not listed come after all of them.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// Position of a kind in the apply order (unlisted kinds share the last position).
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Objects of one wave, in groups that may be applied concurrently: every object of a group
/// has the same kind rank, and a group starts only after the previous one is applied.
#[derive(Debug, PartialEq)]
pub struct Wave<'a> {
    /// The wave number.
    pub wave: i64,
    /// Groups in apply order.
    pub groups: Vec<Vec<&'a DesiredObject>>,
}

/// What an object may depend on being applied before it.
#[derive(Hash, PartialEq, Eq)]
enum Dependency {
    Namespace(String),
    /// `group/kind` of a custom resource.
    Definition(String),
}

/// The effective wave of every object: its own, or earlier when an object of an earlier wave
/// lives in the Namespace or is an instance of the CRD.
pub fn effective_waves(objects: &[DesiredObject]) -> Vec<i64> {
    let mut first_use: HashMap<Dependency, i64> = HashMap::new();
    let mut note = |dependency: Dependency, wave: i64| {
        let entry = first_use.entry(dependency).or_insert(wave);
        *entry = (*entry).min(wave);
    };
    for object in objects {
        if !object.key.namespace.is_empty() {
            note(
                Dependency::Namespace(object.key.namespace.clone()),
                object.wave,
            );
        }
        note(
            Dependency::Definition(format!("{}/{}", object.key.group, object.key.kind)),
            object.wave,
        );
    }
    objects
        .iter()
        .map(|object| {
            let provides = match (object.key.group.as_str(), object.key.kind.as_str()) {
                ("", "Namespace") => Some(Dependency::Namespace(object.key.name.clone())),
                ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                    let spec = object.object.get("spec");
                    let group = spec.and_then(|s| s.get("group")).and_then(|g| g.as_str());
                    let kind = spec
                        .and_then(|s| s.get("names"))
                        .and_then(|n| n.get("kind"))
                        .and_then(|k| k.as_str());
                    group
                        .zip(kind)
                        .map(|(g, k)| Dependency::Definition(format!("{g}/{k}")))
                }
                _ => None,
            };
            provides
                .and_then(|dependency| first_use.get(&dependency).copied())
                .map_or(object.wave, |used| used.min(object.wave))
        })
        .collect()
}

/// Sorts objects into waves and kind groups, in Argo CD's order.
pub fn plan_waves(objects: &[DesiredObject]) -> Vec<Wave<'_>> {
    let waves = effective_waves(objects);
    let mut order: Vec<(i64, usize, &str, &DesiredObject)> = objects
        .iter()
        .zip(waves)
        .map(|(object, wave)| {
            (
                wave,
                kind_rank(&object.key.kind),
                object.key.name.as_str(),
                object,
            )
        })
        .collect();
    order.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut result: Vec<Wave<'_>> = Vec::new();
    for (wave, rank, _, object) in order {
        let new_wave = result.last().is_none_or(|w| w.wave != wave);
        if new_wave {
            result.push(Wave {
                wave,
                groups: Vec::new(),
            });
        }
        let Some(current) = result.last_mut() else {
            continue;
        };
        let same_group = current
            .groups
            .last()
            .and_then(|g| g.first())
            .is_some_and(|first| {
                kind_rank(&first.key.kind) == rank && same_unlisted_kind(first, object, rank)
            });
        if same_group {
            if let Some(group) = current.groups.last_mut() {
                group.push(object);
            }
        } else {
            current.groups.push(vec![object]);
        }
    }
    result
}

/// Unlisted kinds share one rank but still form one group per kind, so a custom resource
/// never races an object of another custom kind it may depend on.
fn same_unlisted_kind(a: &DesiredObject, b: &DesiredObject, rank: usize) -> bool {
    rank < KIND_ORDER.len() || (a.key.group == b.key.group && a.key.kind == b.key.kind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gitops::resource::ResourceKey;

    fn object(group: &str, kind: &str, namespace: &str, name: &str, wave: i64) -> DesiredObject {
        DesiredObject {
            key: ResourceKey::new(group, kind, namespace, name),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            object: json!({}),
            origin: "x.yaml:1".into(),
            wave,
        }
    }

    fn flat(waves: &[Wave<'_>]) -> Vec<String> {
        waves
            .iter()
            .flat_map(|w| {
                w.groups.iter().enumerate().flat_map(move |(g, group)| {
                    group
                        .iter()
                        .map(move |o| format!("{}:{}:{}/{}", w.wave, g, o.key.kind, o.key.name))
                })
            })
            .collect()
    }

    #[test]
    fn waves_then_kinds_then_names() {
        let objects = vec![
            object("apps", "Deployment", "shop", "web", 0),
            object("", "Service", "shop", "web", 0),
            object("", "ConfigMap", "shop", "b", 0),
            object("", "ConfigMap", "shop", "a", 0),
            object("argoproj.io", "Rollout", "shop", "canary", 0),
            object("batch", "Job", "shop", "late", 5),
            object("", "Namespace", "", "shop", 0),
            object("", "Secret", "shop", "early", -1),
        ];
        let waves = plan_waves(&objects);
        assert_eq!(
            flat(&waves),
            [
                "-1:0:Namespace/shop",
                "-1:1:Secret/early",
                "0:0:ConfigMap/a",
                "0:0:ConfigMap/b",
                "0:1:Service/web",
                "0:2:Deployment/web",
                "0:3:Rollout/canary",
                "5:0:Job/late",
            ]
        );
    }

    #[test]
    fn a_crd_moves_to_the_first_wave_using_it_and_precedes_its_objects() {
        let mut crd = object(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "",
            "widgets.example.com",
            3,
        );
        crd.object = json!({"spec": {"group": "example.com", "names": {"kind": "Widget"}}});
        let objects = vec![object("example.com", "Widget", "shop", "w", 1), crd];
        assert_eq!(effective_waves(&objects), [1, 1]);
        assert_eq!(
            flat(&plan_waves(&objects)),
            [
                "1:0:CustomResourceDefinition/widgets.example.com",
                "1:1:Widget/w"
            ]
        );
    }

    #[test]
    fn unlisted_kinds_sort_by_name_and_group_per_kind() {
        let objects = vec![
            object("b.io", "Beta", "ns", "a", 0),
            object("a.io", "Alpha", "ns", "b", 0),
            object("b.io", "Beta", "ns", "c", 0),
        ];
        assert_eq!(
            flat(&plan_waves(&objects)),
            ["0:0:Beta/a", "0:1:Alpha/b", "0:2:Beta/c"]
        );
        assert!(kind_rank("Namespace") < kind_rank("CustomResourceDefinition"));
        assert_eq!(kind_rank("Rollout"), kind_rank("Widget"));
    }
}
