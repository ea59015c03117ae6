//! The writes of the mutating commands, exactly those Argo Rollouts' kubectl plugin makes, so
//! either plugin drives either controller:
//!
//! | command        | patch (JSON merge unless noted)                                          | where            |
//! |----------------|--------------------------------------------------------------------------|------------------|
//! | promote        | `{"status":{"pauseConditions":null}}`, or with `currentStepIndex: i+1`   | status           |
//! |                | `{"spec":{"paused":false}}` when paused by a user                        | main             |
//! | promote --full | `{"status":{"promoteFull":true}}`                                        | status           |
//! | abort          | `{"status":{"abort":true}}`                                              | status           |
//! | retry          | `{"status":{"abort":false}}`                                             | status           |
//! | pause          | `{"spec":{"paused":true}}`                                               | main             |
//! | restart        | `{"spec":{"restartAt":"<RFC 3339>"}}`                                    | main             |
//! | undo           | JSON patch: replace `/spec/template` with a ReplicaSet's pod template    | main             |
//! | set image      | the Rollout with the container images changed, written back (update)    | main             |
//!
//! Status patches go to the status subresource; where a cluster serves the kind without one
//! (very old CRDs), the caller sends [`Promotion::unified`] (or the same status patch) to the
//! main resource instead, as Argo's plugin does.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::Rollout;
use crate::rollout::names::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION};

/// What `promote` sends: a status patch, a spec patch, both or neither, and the unified patch
/// for clusters without the status subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct Promotion {
    pub status: Option<Value>,
    pub spec: Option<Value>,
    pub unified: Option<Value>,
    pub outcome: PromotionOutcome,
}

/// What a promotion does, for the one line the command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromotionOutcome {
    /// Pause conditions cleared (and/or the user pause lifted).
    Resumed,
    /// The current (non-pause) step is skipped: the rollout moves on to `to_step`.
    SkippedStep { to_step: i32 },
    /// Every remaining step and analysis is skipped.
    Full,
    /// Nothing to promote: not paused, no step left to skip, or already fully promoted.
    Nothing,
}

/// The patches of `promote` (`full`: `promote --full`).
pub fn promote(rollout: &Rollout, full: bool) -> Promotion {
    let status = rollout.status.clone().unwrap_or_default();
    if full {
        if status.current_pod_hash != status.stable_rs {
            let patch = json!({"status": {"promoteFull": true}});
            return Promotion {
                status: Some(patch.clone()),
                spec: None,
                unified: Some(patch),
                outcome: PromotionOutcome::Full,
            };
        }
        return Promotion {
            status: None,
            spec: None,
            unified: None,
            outcome: PromotionOutcome::Nothing,
        };
    }
    let paused_by_user = rollout.spec.paused == Some(true);
    let spec = paused_by_user.then(|| json!({"spec": {"paused": false}}));
    let has_pause_conditions = status
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty());
    if has_pause_conditions {
        return Promotion {
            status: Some(json!({"status": {"pauseConditions": null}})),
            spec,
            unified: Some(json!({"spec": {"paused": false}, "status": {"pauseConditions": null}})),
            outcome: PromotionOutcome::Resumed,
        };
    }
    // Not paused by a step: promoting skips the step under way (an analysis, a setWeight
    // waiting for pods), unless every step is already done.
    let steps = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.steps.as_ref())
        .map_or(0, Vec::len);
    let index = status.current_step_index.unwrap_or(0).max(0);
    if steps > 0 && (index as usize) < steps {
        let next = index + 1;
        return Promotion {
            status: Some(json!({"status": {"pauseConditions": null, "currentStepIndex": next}})),
            spec,
            unified: Some(
                json!({"spec": {"paused": false}, "status": {"pauseConditions": null, "currentStepIndex": next}}),
            ),
            outcome: PromotionOutcome::SkippedStep { to_step: next },
        };
    }
    let outcome = if paused_by_user {
        PromotionOutcome::Resumed
    } else {
        PromotionOutcome::Nothing
    };
    Promotion {
        status: None,
        unified: spec.clone(),
        spec,
        outcome,
    }
}

/// `abort`: the controller scales the canary away and sends all traffic to stable.
pub fn abort() -> Value {
    json!({"status": {"abort": true}})
}

/// `retry`: clears the abort so the update starts again from the first step.
pub fn retry() -> Value {
    json!({"status": {"abort": false}})
}

/// `pause`: a user pause, lifted by `promote`.
pub fn pause() -> Value {
    json!({"spec": {"paused": true}})
}

/// `restart`: pods created before `at` are replaced, one ReplicaSet at a time. Whole seconds,
/// in UTC, as the API stores times.
pub fn restart(at: Timestamp) -> Value {
    let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
    json!({"spec": {"restartAt": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}})
}

/// Why `undo` cannot go ahead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UndoError {
    #[error("revision {0} is not in the history of rollout {1}; revisions kept: {2}")]
    UnknownRevision(i64, String, String),
    #[error("rollout {0} has no earlier revision to go back to (revisions kept: {1})")]
    NoPreviousRevision(String, String),
    #[error("ReplicaSet {0} has no pod template")]
    NoTemplate(String),
    #[error("the pod template of ReplicaSet {0} cannot be written as JSON: {1}")]
    Encoding(String, String),
}

/// What `undo` does.
#[derive(Clone, Debug, PartialEq)]
pub enum Undo {
    /// Send this JSON patch; the Rollout goes back to `revision`.
    Patch { patch: Value, revision: i64 },
    /// The Rollout's template already is that of `revision`.
    AlreadyAt { revision: i64 },
}

/// The ReplicaSet of `to_revision` among the Rollout's own (owner UID), or of the revision
/// before the newest when `to_revision` is None.
pub fn undo_target<'a>(
    rollout: &Rollout,
    replica_sets: &'a [ReplicaSet],
    to_revision: Option<i64>,
) -> Result<&'a ReplicaSet, UndoError> {
    let uid = rollout.metadata.uid.clone().unwrap_or_default();
    let name = format!(
        "{}/{}",
        rollout.metadata.namespace.as_deref().unwrap_or_default(),
        rollout.metadata.name.as_deref().unwrap_or_default()
    );
    let mut owned: Vec<(i64, &ReplicaSet)> = replica_sets
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .filter_map(|rs| {
            let revision = rs
                .metadata
                .annotations
                .as_ref()?
                .get(REVISION_ANNOTATION)?
                .parse::<i64>()
                .ok()?;
            Some((revision, rs))
        })
        .collect();
    owned.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    let kept = if owned.is_empty() {
        "none".to_string()
    } else {
        owned
            .iter()
            .map(|(r, _)| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match to_revision {
        Some(wanted) => owned
            .iter()
            .find(|(r, _)| *r == wanted)
            .map(|(_, rs)| *rs)
            .ok_or(UndoError::UnknownRevision(wanted, name, kept)),
        None => owned
            .get(1)
            .map(|(_, rs)| *rs)
            .ok_or(UndoError::NoPreviousRevision(name, kept)),
    }
}

/// The undo of `rollout` (its JSON as read) to `target`: the ReplicaSet's pod template without
/// the pod-template-hash label replaces `spec.template`, unless the template already matches.
pub fn undo(rollout: &Value, target: &ReplicaSet) -> Result<Undo, UndoError> {
    let rs_name = target.metadata.name.clone().unwrap_or_default();
    let revision = target
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut template: PodTemplateSpec = target
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| UndoError::NoTemplate(rs_name.clone()))?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let template =
        serde_json::to_value(&template).map_err(|e| UndoError::Encoding(rs_name, e.to_string()))?;
    let mut current = rollout
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(labels) = current
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if derivative(&current, &template) {
        return Ok(Undo::AlreadyAt { revision });
    }
    Ok(Undo::Patch {
        patch: json!([{"op": "replace", "path": "/spec/template", "value": template}]),
        revision,
    })
}

/// Whether `b` is `a` with only defaults added: every field set in `a` has the same value in
/// `b`; fields absent (or null) in `a` are ignored. The API server defaults the pod templates of
/// ReplicaSets, not those inside Rollouts, so a plain comparison would never match.
pub fn derivative(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) => true,
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(key, value)| match b.get(key) {
            Some(other) => derivative(value, other),
            None => value.is_null() || value.as_object().is_some_and(|o| o.is_empty()),
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| derivative(x, y))
        }
        _ => a == b,
    }
}

/// Why `set image` cannot go ahead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetImageError {
    #[error("expected CONTAINER=IMAGE (or *=IMAGE for every container), got {0:?}")]
    Syntax(String),
    #[error(
        "rollout {rollout} has no container {container:?}; its containers are: {known} (use *=IMAGE to set them all)"
    )]
    NoSuchContainer {
        rollout: String,
        container: String,
        known: String,
    },
    #[error(
        "rollout {0} has no pod template of its own (it uses spec.workloadRef); set the image on the referenced workload"
    )]
    NoTemplate(String),
}

/// `CONTAINER=IMAGE` split in two.
pub fn parse_image_assignment(text: &str) -> Result<(String, String), SetImageError> {
    match text.split_once('=') {
        Some((container, image))
            if !container.is_empty() && !image.is_empty() && !image.contains('=') =>
        {
            Ok((container.to_string(), image.to_string()))
        }
        _ => Err(SetImageError::Syntax(text.to_string())),
    }
}

/// Sets the image of `container` (`*`: all) among the containers, init containers and
/// ephemeral containers of the Rollout JSON `rollout`; returns the names of the containers
/// changed (empty when they already ran `image`).
pub fn set_image(
    rollout: &mut Value,
    rollout_name: &str,
    container: &str,
    image: &str,
) -> Result<Vec<String>, SetImageError> {
    let Some(pod_spec) = rollout
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    else {
        return Err(SetImageError::NoTemplate(rollout_name.to_string()));
    };
    let mut found = false;
    let mut changed = Vec::new();
    let mut known = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for entry in pod_spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            known.push(name.clone());
            if container == "*" || name == container {
                found = true;
                if entry.get("image").and_then(Value::as_str) != Some(image) {
                    entry["image"] = Value::String(image.to_string());
                    changed.push(name);
                }
            }
        }
    }
    if !found {
        return Err(SetImageError::NoSuchContainer {
            rollout: rollout_name.to_string(),
            container: container.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::tests::{canary_rollout, replica_set};

    #[test]
    fn promote_clears_pause_conditions_only() {
        let promotion = promote(&canary_rollout(1), false);
        assert_eq!(
            promotion.status,
            Some(json!({"status": {"pauseConditions": null}}))
        );
        assert_eq!(promotion.spec, None);
        assert_eq!(promotion.outcome, PromotionOutcome::Resumed);
    }

    #[test]
    fn promote_lifts_a_user_pause_with_a_spec_patch() {
        let mut rollout = canary_rollout(1);
        rollout.spec.paused = Some(true);
        let promotion = promote(&rollout, false);
        assert_eq!(promotion.spec, Some(json!({"spec": {"paused": false}})));
        assert_eq!(
            promotion.status,
            Some(json!({"status": {"pauseConditions": null}}))
        );
        assert_eq!(
            promotion.unified,
            Some(json!({"spec": {"paused": false}, "status": {"pauseConditions": null}}))
        );
    }

    #[test]
    fn promote_skips_a_running_step() {
        let mut rollout = canary_rollout(2);
        rollout.status.as_mut().unwrap().pause_conditions = None;
        let promotion = promote(&rollout, false);
        assert_eq!(
            promotion.status,
            Some(json!({"status": {"pauseConditions": null, "currentStepIndex": 3}}))
        );
        assert_eq!(
            promotion.outcome,
            PromotionOutcome::SkippedStep { to_step: 3 }
        );
        // Past the last step there is nothing to skip.
        let mut done = canary_rollout(4);
        done.status.as_mut().unwrap().pause_conditions = None;
        let promotion = promote(&done, false);
        assert_eq!((promotion.status, promotion.spec), (None, None));
        assert_eq!(promotion.outcome, PromotionOutcome::Nothing);
    }

    #[test]
    fn full_promotion_only_while_updating() {
        let promotion = promote(&canary_rollout(1), true);
        assert_eq!(
            promotion.status,
            Some(json!({"status": {"promoteFull": true}}))
        );
        let mut promoted = canary_rollout(4);
        promoted.status.as_mut().unwrap().stable_rs = Some("new".into());
        assert_eq!(promote(&promoted, true).outcome, PromotionOutcome::Nothing);
    }

    #[test]
    fn fixed_patches() {
        assert_eq!(abort(), json!({"status": {"abort": true}}));
        assert_eq!(retry(), json!({"status": {"abort": false}}));
        assert_eq!(pause(), json!({"spec": {"paused": true}}));
        let at: Timestamp = "2024-05-01T10:00:30.750Z".parse().unwrap();
        assert_eq!(
            restart(at),
            json!({"spec": {"restartAt": "2024-05-01T10:00:30Z"}})
        );
    }

    #[test]
    fn undo_picks_the_previous_revision() {
        let rollout = canary_rollout(1);
        let sets = vec![
            replica_set("old", 1, 5, 5, "shop/web:1", "2024-05-01T10:00:00Z"),
            replica_set("new", 2, 1, 1, "shop/web:2", "2024-05-01T10:04:00Z"),
        ];
        let target = undo_target(&rollout, &sets, None).unwrap();
        assert_eq!(target.metadata.name.as_deref(), Some("web-old"));
        assert_eq!(
            undo_target(&rollout, &sets, Some(2))
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("web-new")
        );
        assert_eq!(
            undo_target(&rollout, &sets, Some(9))
                .unwrap_err()
                .to_string(),
            "revision 9 is not in the history of rollout shop/web; revisions kept: 2, 1"
        );
        assert!(matches!(
            undo_target(&rollout, &sets[..1], None),
            Err(UndoError::NoPreviousRevision(..))
        ));

        let json = serde_json::to_value(&rollout).unwrap();
        let Undo::Patch { patch, revision } = undo(&json, target).unwrap() else {
            panic!("expected a patch")
        };
        assert_eq!(revision, 1);
        assert_eq!(patch[0]["op"], "replace");
        assert_eq!(patch[0]["path"], "/spec/template");
        assert_eq!(
            patch[0]["value"]["spec"]["containers"][0]["image"],
            "shop/web:1"
        );
        assert_eq!(
            patch[0]["value"]["metadata"]["labels"],
            json!({"app": "web"}),
            "hash label removed"
        );
        // Going "back" to the current template changes nothing.
        assert_eq!(
            undo(&json, &sets[1]).unwrap(),
            Undo::AlreadyAt { revision: 2 }
        );
    }

    #[test]
    fn derivative_ignores_server_defaults() {
        let sparse = json!({"spec": {"containers": [{"name": "web", "image": "a"}]}});
        let defaulted = json!({"spec": {"containers": [{"name": "web", "image": "a", "imagePullPolicy": "Always"}],
                                        "dnsPolicy": "ClusterFirst"}});
        assert!(derivative(&sparse, &defaulted));
        let other = json!({"spec": {"containers": [{"name": "web", "image": "b", "imagePullPolicy": "Always"}]}});
        assert!(!derivative(&sparse, &other));
        let two = json!({"spec": {"containers": [{"name": "web", "image": "a"}, {"name": "x"}]}});
        assert!(!derivative(&sparse, &two));
    }

    #[test]
    fn set_image_by_name_or_all() {
        let mut rollout = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "migrate", "image": "m:1"}],
            "containers": [{"name": "web", "image": "w:1"}, {"name": "proxy", "image": "p:1"}]}}}});
        assert_eq!(
            set_image(&mut rollout, "shop/web", "web", "w:2").unwrap(),
            vec!["web"]
        );
        assert_eq!(
            rollout["spec"]["template"]["spec"]["containers"][0]["image"],
            "w:2"
        );
        assert_eq!(
            rollout["spec"]["template"]["spec"]["containers"][1]["image"],
            "p:1"
        );
        assert_eq!(
            set_image(&mut rollout, "shop/web", "web", "w:2").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            set_image(&mut rollout, "shop/web", "*", "all:3").unwrap(),
            vec!["migrate", "web", "proxy"]
        );
        assert_eq!(
            set_image(&mut rollout, "shop/web", "db", "x")
                .unwrap_err()
                .to_string(),
            "rollout shop/web has no container \"db\"; its containers are: migrate, web, proxy (use *=IMAGE to set them all)"
        );
        let mut by_ref = json!({"spec": {"workloadRef": {"kind": "Deployment", "name": "web"}}});
        assert!(matches!(
            set_image(&mut by_ref, "shop/web", "web", "x"),
            Err(SetImageError::NoTemplate(_))
        ));
    }

    #[test]
    fn image_assignments() {
        assert_eq!(
            parse_image_assignment("web=nginx:1.25").unwrap(),
            ("web".into(), "nginx:1.25".into())
        );
        assert_eq!(
            parse_image_assignment("*=nginx").unwrap(),
            ("*".into(), "nginx".into())
        );
        assert!(parse_image_assignment("nginx").is_err());
        assert!(parse_image_assignment("=nginx").is_err());
        assert!(parse_image_assignment("a=b=c").is_err());
    }
}
