//! A Rollout's ReplicaSets: finding the new and stable ones, creating the new one with its
//! revision, scaling with Argo's annotations and Events, scale-down deadlines, and deleting
//! old revisions beyond `revisionHistoryLimit`. Shared by every strategy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};

use super::conditions::{
    self, NEW_REPLICA_SET_REASON, PROGRESSING, ROLLOUT_UPDATED_REASON, SCALING_REPLICA_SET_REASON,
    TRUE,
};
use super::hash::pod_template_hash;
use super::names::{
    DESIRED_REPLICAS_ANNOTATION, EPHEMERAL_METADATA_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION, replica_set_name,
};
use super::observe::ReplicaSetExt;
use super::plan::{Planner, ReplicaSets};
use super::template::replica_set_runs;
use crate::api::{AntiAffinity, ObjectLabels, Rollout, RolloutStatus};

/// `rollout.argoproj.io/revision-history`: revisions an undone-to ReplicaSet served before.
const REVISION_HISTORY_ANNOTATION: &str = "rollout.argoproj.io/revision-history";
/// Rollout annotations never copied onto its ReplicaSets.
const NOT_COPIED: [&str; 4] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
];

/// Sorts the observed ReplicaSets into new, stable, older and others.
pub fn classify(
    all: &[Arc<ReplicaSet>],
    template: &PodTemplateSpec,
    status: &RolloutStatus,
) -> ReplicaSets {
    let mut all: Vec<Arc<ReplicaSet>> = all.to_vec();
    all.sort_by(|a, b| {
        a.created()
            .cmp(&b.created())
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let hash = pod_template_hash(template, status.collision_count);
    let new = all
        .iter()
        .find(|rs| rs.pod_hash() == hash)
        .or_else(|| all.iter().find(|rs| replica_set_runs(rs, template)))
        .cloned();
    let mut sets = ReplicaSets {
        all,
        new,
        ..Default::default()
    };
    sets.refresh(status.stable_rs.as_deref().unwrap_or(""));
    sets
}

impl ReplicaSets {
    /// Recomputes `older`, `stable` and `others` after `new` changed.
    pub fn refresh(&mut self, stable_hash: &str) {
        let new_name = self.new.as_ref().map(|rs| rs.name_any());
        self.older = self
            .all
            .iter()
            .filter(|rs| Some(rs.name_any()) != new_name)
            .cloned()
            .collect();
        self.stable = if stable_hash.is_empty() {
            None
        } else if self
            .new
            .as_ref()
            .is_some_and(|rs| rs.pod_hash() == stable_hash)
        {
            self.new.clone()
        } else {
            self.older
                .iter()
                .find(|rs| rs.pod_hash() == stable_hash)
                .cloned()
        };
        let stable_name = self.stable.as_ref().map(|rs| rs.name_any());
        self.others = self
            .older
            .iter()
            .filter(|rs| Some(rs.name_any()) != stable_name)
            .cloned()
            .collect();
    }
}

/// Highest revision among ReplicaSets.
pub fn max_revision(sets: &[Arc<ReplicaSet>]) -> i64 {
    sets.iter()
        .filter_map(|rs| rs.revision())
        .max()
        .unwrap_or(0)
}

/// Whether the Rollout was scaled (an HPA, `kubectl scale`) since its ReplicaSets were last
/// sized: an active ReplicaSet records a different `desired-replicas`.
pub fn is_scaling_event(sets: &ReplicaSets, replicas: i32) -> bool {
    sets.all.iter().filter(|rs| rs.is_active()).any(|rs| {
        rs.desired_replicas_annotation()
            .is_some_and(|d| d != replicas)
    })
}

/// Brings the new ReplicaSet's revision and copied annotations up to date, or creates it
/// when `create` and it does not exist (Argo's `getAllReplicaSetsAndSyncRevision`).
pub fn sync_revision(p: &mut Planner<'_>, create: bool) {
    let new_revision = (max_revision(&p.sets.older) + 1).to_string();
    let Some(new) = p.sets.new.clone() else {
        if create {
            create_new(p, &new_revision);
        }
        return;
    };
    let mut changed = copied_annotations(p.rollout, &new);
    let current = new.annotations().get(REVISION_ANNOTATION).cloned();
    let current_number = match current.as_deref() {
        None | Some("") => Some(0),
        Some(text) => text.parse::<i64>().ok(),
    };
    let mut revision_changed = false;
    if let (Some(current_number), Ok(wanted)) = (current_number, new_revision.parse::<i64>())
        && current_number < wanted
    {
        changed.insert(REVISION_ANNOTATION.into(), Some(new_revision.clone()));
        revision_changed = true;
    }
    if (revision_changed || !changed.is_empty())
        && let Some(old) = current.filter(|c| !c.is_empty())
    {
        let history = new
            .annotations()
            .get(REVISION_HISTORY_ANNOTATION)
            .filter(|h| !h.is_empty());
        let history = match history {
            Some(history) => format!("{history},{old}"),
            None => old,
        };
        changed.insert(REVISION_HISTORY_ANNOTATION.into(), Some(history));
    }
    let min_ready = p.rollout.spec.min_ready_seconds.unwrap_or(0);
    let min_ready_changed = new
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
        != min_ready;
    let anti_affinity = repointed_anti_affinity(&new, p.rollout, p.stable_rs_hash());
    if !changed.is_empty() || min_ready_changed || anti_affinity.is_some() {
        let name = new.name_any();
        let update = p.replica_set_update(&name);
        update.annotations.extend(changed);
        if min_ready_changed {
            update.min_ready_seconds = Some(min_ready);
        }
        if anti_affinity.is_some() {
            update.template_pod_anti_affinity = anti_affinity;
        }
        // Argo records the Rollout's revision on the next pass, once the ReplicaSet holds it.
        return;
    }
    if let Some(revision) = new.annotations().get(REVISION_ANNOTATION).cloned() {
        set_rollout_revision(p, &revision);
    }
    if conditions::get(
        &p.new_status.conditions.clone().unwrap_or_default(),
        PROGRESSING,
    )
    .is_none()
    {
        let message = conditions::found_new_rs_message(&new.name_any());
        let condition = conditions::new_condition(
            PROGRESSING,
            TRUE,
            conditions::FOUND_NEW_RS_REASON,
            message,
            p.now,
        );
        conditions::set(
            p.new_status.conditions.get_or_insert_with(Vec::new),
            condition,
        );
    }
}

/// Rollout annotations the ReplicaSet lacks or holds with another value.
fn copied_annotations(rollout: &Rollout, rs: &ReplicaSet) -> BTreeMap<String, Option<String>> {
    let existing = rs.annotations();
    rollout
        .annotations()
        .iter()
        .filter(|(k, v)| !NOT_COPIED.contains(&k.as_str()) && existing.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

/// Records the Rollout's revision annotation, with Argo's `RolloutUpdated` Event.
pub fn set_rollout_revision(p: &mut Planner<'_>, revision: &str) {
    if p.revision == revision {
        return;
    }
    p.plan.rollout_revision = Some(revision.to_string());
    p.revision = revision.to_string();
    p.event(
        ROLLOUT_UPDATED_REASON,
        format!("Rollout updated to revision {revision}"),
    );
}

/// Plans the creation of the new ReplicaSet (0 replicas; scaling decides its size).
fn create_new(p: &mut Planner<'_>, revision: &str) {
    let rs = new_replica_set(p, revision);
    let name = rs.name_any();
    p.event(
        NEW_REPLICA_SET_REASON,
        format!("Created ReplicaSet {name} (revision {revision})"),
    );
    set_rollout_revision(p, revision);
    let condition = conditions::new_condition(
        PROGRESSING,
        TRUE,
        NEW_REPLICA_SET_REASON,
        conditions::new_replica_set_message(&name),
        p.now,
    );
    conditions::set(
        p.new_status.conditions.get_or_insert_with(Vec::new),
        condition,
    );
    let rs = Arc::new(rs);
    p.sets.all.push(rs.clone());
    p.sets.new = Some(rs.clone());
    let stable = p.stable_rs_hash().to_string();
    p.sets.refresh(&stable);
    p.plan.create_replica_set = Some(Box::new((*rs).clone()));
}

/// The complete new ReplicaSet of the Rollout's current template.
fn new_replica_set(p: &Planner<'_>, revision: &str) -> ReplicaSet {
    let rollout = p.rollout;
    let status = p.status();
    let hash = pod_template_hash(p.template, status.collision_count);
    let mut template = p.template.clone();
    let metadata = template.metadata.get_or_insert_with(Default::default);
    metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    if let Some(spec) = template.spec.as_mut() {
        spec.affinity = injected_affinity(
            spec.affinity.take(),
            anti_affinity(rollout),
            p.stable_rs_hash(),
            &hash,
            rollout,
        );
    }
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    let mut selector = rollout.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());

    let mut annotations: BTreeMap<String, String> = rollout
        .annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS_ANNOTATION.into(), p.replicas().to_string());

    // Pods of a new revision beside a stable one get the canary (preview) metadata; the first
    // revision will become stable, so it gets the stable (active) metadata.
    let ephemeral = ephemeral_metadata(
        rollout,
        p.sets.stable.is_some() && p.sets.stable_differs_from_hash(&hash),
    );
    if let Some(ephemeral) = ephemeral.filter(|e| e.labels.is_some() || e.annotations.is_some()) {
        let metadata = template.metadata.get_or_insert_with(Default::default);
        for (k, v) in ephemeral.labels.iter().flatten() {
            metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
        }
        for (k, v) in ephemeral.annotations.iter().flatten() {
            metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
        }
        if let Ok(json) = serde_json::to_string(ephemeral) {
            annotations.insert(EPHEMERAL_METADATA_ANNOTATION.into(), json);
        }
    }

    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(replica_set_name(&rollout.name_any(), &hash)),
            namespace: rollout.namespace(),
            labels,
            annotations: Some(annotations),
            owner_references: rollout.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

impl ReplicaSets {
    fn stable_differs_from_hash(&self, hash: &str) -> bool {
        self.stable.as_ref().is_some_and(|s| s.pod_hash() != hash)
    }
}

/// `canaryMetadata` for a canary beside a stable, `stableMetadata` otherwise (blue-green:
/// preview and active).
pub fn ephemeral_metadata(rollout: &Rollout, beside_stable: bool) -> Option<&ObjectLabels> {
    let strategy = rollout.spec.strategy.as_ref()?;
    if let Some(canary) = &strategy.canary {
        return if beside_stable {
            canary.canary_metadata.as_ref()
        } else {
            canary.stable_metadata.as_ref()
        };
    }
    let blue_green = strategy.blue_green.as_ref()?;
    if beside_stable {
        blue_green.preview_metadata.as_ref()
    } else {
        blue_green.active_metadata.as_ref()
    }
}

fn anti_affinity(rollout: &Rollout) -> Option<&AntiAffinity> {
    let strategy = rollout.spec.strategy.as_ref()?;
    let anti = strategy
        .canary
        .as_ref()
        .and_then(|c| c.anti_affinity.as_ref())
        .or_else(|| {
            strategy
                .blue_green
                .as_ref()
                .and_then(|b| b.anti_affinity.as_ref())
        })?;
    (anti
        .preferred_during_scheduling_ignored_during_execution
        .is_some()
        || anti
            .required_during_scheduling_ignored_during_execution
            .is_some())
    .then_some(anti)
}

/// Adds the rule keeping new pods off the nodes of the stable pods (`antiAffinity`).
fn injected_affinity(
    affinity: Option<Affinity>,
    anti: Option<&AntiAffinity>,
    stable_hash: &str,
    new_hash: &str,
    rollout: &Rollout,
) -> Option<Affinity> {
    let Some(anti) = anti else { return affinity };
    if stable_hash.is_empty() || stable_hash == new_hash {
        return affinity;
    }
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.into(),
                operator: "In".into(),
                values: Some(vec![stable_hash.to_string()]),
            }]),
            match_labels: None,
        }),
        namespaces: rollout.namespace().map(|n| vec![n]),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let mut affinity = affinity.unwrap_or_default();
    let pod_anti = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    match &anti.preferred_during_scheduling_ignored_during_execution {
        Some(preferred) => pod_anti
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            }),
        None => pod_anti
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term),
    }
    Some(affinity)
}

/// The new ReplicaSet's `podAntiAffinity` when its injected `antiAffinity` term no longer
/// selects the stable revision's pods: the stable one changed since the ReplicaSet was created
/// (a going back to an older revision). `None` when nothing is to change. As in Argo
/// (`IfInjectedAntiAffinityRuleNeedsUpdate`), the ReplicaSet of the stable revision itself is
/// left alone; unlike Argo, a ReplicaSet created without the term (the first revision, or
/// before `antiAffinity` was set) gets it too, so the pods it starts beside the stable ones
/// keep off their nodes like those of any other update.
pub fn repointed_anti_affinity(
    rs: &ReplicaSet,
    rollout: &Rollout,
    stable_hash: &str,
) -> Option<PodAntiAffinity> {
    let anti = anti_affinity(rollout)?;
    let new_hash = rs.pod_hash();
    if stable_hash.is_empty() || new_hash.is_empty() || stable_hash == new_hash {
        return None;
    }
    let current = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.affinity.clone());
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .is_some();
    let terms: Vec<&PodAffinityTerm> = {
        let pod_anti = current.as_ref().and_then(|a| a.pod_anti_affinity.as_ref());
        if preferred {
            pod_anti
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|w| &w.pod_affinity_term)
                .collect()
        } else {
            pod_anti
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .collect()
        }
    };
    let injected = terms.iter().position(|term| is_injected_term(term));
    if let Some(index) = injected
        && selects_only(terms[index], stable_hash)
    {
        return None;
    }
    let mut affinity = current.unwrap_or_default();
    if let (Some(index), Some(pod_anti)) = (injected, affinity.pod_anti_affinity.as_mut()) {
        if preferred {
            if let Some(list) = pod_anti
                .preferred_during_scheduling_ignored_during_execution
                .as_mut()
            {
                list.remove(index);
            }
        } else if let Some(list) = pod_anti
            .required_during_scheduling_ignored_during_execution
            .as_mut()
        {
            list.remove(index);
        }
    }
    injected_affinity(Some(affinity), Some(anti), stable_hash, new_hash, rollout)
        .and_then(|a| a.pod_anti_affinity)
}

/// The term `antiAffinity` injects: it selects pods by their pod-template hash.
fn is_injected_term(term: &PodAffinityTerm) -> bool {
    term.label_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .is_some_and(|e| e.iter().any(|r| r.key == POD_TEMPLATE_HASH_LABEL))
}

fn selects_only(term: &PodAffinityTerm, hash: &str) -> bool {
    term.label_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .filter(|r| r.key == POD_TEMPLATE_HASH_LABEL)
        .all(|r| r.operator == "In" && r.values.as_deref() == Some(&[hash.to_string()][..]))
}

/// Scales a ReplicaSet (and refreshes its `desired-replicas` annotation), with Argo's
/// `ScalingReplicaSet` Event. Returns whether the size changes.
pub fn scale(p: &mut Planner<'_>, rs: &ReplicaSet, to: i32, keep_deadline: bool) -> bool {
    let replicas = p.replicas();
    let from = planned_size(p, rs);
    let size_changes = from != to;
    let annotation_changes = rs.desired_replicas_annotation() != Some(replicas);
    if !size_changes && !annotation_changes {
        return false;
    }
    let name = rs.name_any();
    if let Some(created) = p
        .plan
        .create_replica_set
        .as_mut()
        .filter(|c| c.metadata.name.as_deref() == Some(&name))
    {
        // Not created yet: create it at its size directly.
        if let Some(spec) = created.spec.as_mut() {
            spec.replicas = Some(to);
        }
    } else {
        let remove_deadline = to == 0 && !keep_deadline && rs.has_scale_down_deadline();
        let update = p.replica_set_update(&name);
        if size_changes {
            update.replicas = Some(to);
        }
        update.annotations.insert(
            DESIRED_REPLICAS_ANNOTATION.into(),
            Some(replicas.to_string()),
        );
        if remove_deadline {
            update
                .annotations
                .insert(SCALE_DOWN_DEADLINE_ANNOTATION.into(), None);
        }
    }
    if size_changes {
        let direction = if from < to { "up" } else { "down" };
        let revision = rs.revision().unwrap_or(0);
        p.event(
            SCALING_REPLICA_SET_REASON,
            format!(
                "Scaled {direction} ReplicaSet {name} (revision {revision}) from {from} to {to}"
            ),
        );
    }
    size_changes
}

/// `spec.replicas` of a ReplicaSet as this plan leaves it so far.
pub fn planned_size(p: &Planner<'_>, rs: &ReplicaSet) -> i32 {
    let name = rs.name_any();
    if let Some(created) = p
        .plan
        .create_replica_set
        .as_ref()
        .filter(|c| c.metadata.name.as_deref() == Some(&name))
    {
        return created.desired();
    }
    p.plan
        .replica_set_updates
        .iter()
        .find(|u| u.name == name)
        .and_then(|u| u.replicas)
        .unwrap_or_else(|| rs.desired())
}

/// Sets the `scale-down-deadline` annotation `delay` from now; a zero delay removes it.
pub fn add_scale_down_deadline(p: &mut Planner<'_>, rs: &ReplicaSet, delay: SignedDuration) {
    let name = rs.name_any();
    if delay.is_zero() {
        remove_scale_down_deadline(p, rs);
        return;
    }
    let deadline = conditions::truncate_to_second(p.now.saturating_add(delay).unwrap_or(p.now));
    p.replica_set_update(&name).annotations.insert(
        SCALE_DOWN_DEADLINE_ANNOTATION.into(),
        Some(deadline.to_string()),
    );
}

pub fn remove_scale_down_deadline(p: &mut Planner<'_>, rs: &ReplicaSet) {
    if !rs.has_scale_down_deadline() {
        return;
    }
    let name = rs.name_any();
    p.replica_set_update(&name)
        .annotations
        .insert(SCALE_DOWN_DEADLINE_ANNOTATION.into(), None);
}

/// Time left before a ReplicaSet's scale-down deadline, if it has one in the future.
pub fn time_to_deadline(rs: &ReplicaSet, now: Timestamp) -> Option<SignedDuration> {
    let deadline = rs.scale_down_deadline()?;
    (deadline > now).then(|| deadline.duration_since(now))
}

/// What `scaleDownDelaySeconds` asks of an old ReplicaSet that no Service or router sends
/// traffic to any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayedScaleDown {
    /// Keep it at its size and start its delay: a deadline this far from now.
    StartDelay(SignedDuration),
    /// Keep it at the Rollout's size until its deadline, this far away.
    Wait(SignedDuration),
    /// Scale it to zero now.
    ScaleDown,
}

/// Argo's `scaleDownDelayHelper`, shared by blue-green and the traffic-routed canary. The
/// old ReplicaSets are visited newest revision first; `kept` counts those held up for a
/// delay, and once `limit` (`scaleDownDelayRevisionLimit`) of them are held the rest go.
///
/// A ReplicaSet counts against the limit when it is held up, or carries a deadline (an expired
/// one included, as in Argo). One without a deadline while the delay is 0 is scaled down at
/// once and does not count: Argo keeps it up forever then and counts it (argo-rollouts#1992,
/// a bug by its own documentation), so `0` here means what the field says, no delay.
pub fn delayed_scale_down(
    rs: &ReplicaSet,
    now: Timestamp,
    delay_seconds: i32,
    limit: Option<i32>,
    kept: &mut i32,
) -> DelayedScaleDown {
    let limit = limit.unwrap_or(i32::MAX);
    if !rs.has_scale_down_deadline() {
        if delay_seconds <= 0 || *kept >= limit {
            return DelayedScaleDown::ScaleDown;
        }
        *kept += 1;
        return DelayedScaleDown::StartDelay(SignedDuration::from_secs(i64::from(delay_seconds)));
    }
    *kept += 1;
    if *kept > limit {
        return DelayedScaleDown::ScaleDown;
    }
    match time_to_deadline(rs, now) {
        Some(remaining) => DelayedScaleDown::Wait(remaining),
        None => DelayedScaleDown::ScaleDown,
    }
}

/// Applies [`delayed_scale_down`] to an old ReplicaSet now at `size`: sets its deadline and
/// asks to look again when the delay ends. Returns the size it should have now.
pub fn scale_down_after_delay(
    p: &mut Planner<'_>,
    rs: &ReplicaSet,
    size: i32,
    delay_seconds: i32,
    limit: Option<i32>,
    kept: &mut i32,
) -> i32 {
    match delayed_scale_down(rs, p.now, delay_seconds, limit, kept) {
        DelayedScaleDown::StartDelay(delay) => {
            add_scale_down_deadline(p, rs, delay);
            p.requeue_after(Duration::try_from(delay).unwrap_or(Duration::ZERO));
            size
        }
        DelayedScaleDown::Wait(remaining) => {
            p.requeue_after(Duration::try_from(remaining).unwrap_or(Duration::ZERO));
            // Argo's size for a ReplicaSet in its delay: a going back is at full size, and a
            // scaling event meanwhile resizes it too (its desired-replicas annotation follows).
            p.replicas()
        }
        DelayedScaleDown::ScaleDown => 0,
    }
}

/// Whether the new ReplicaSet is an older one the Rollout went back to, at most
/// `rollbackWindow.revisions` revisions behind the stable one (Argo's
/// `isRollbackWithinWindow`): such a rollback skips steps, pauses and analysis.
pub fn rollback_within_window(p: &Planner<'_>) -> bool {
    let (Some(new), Some(stable)) = (p.sets.new.as_deref(), p.sets.stable.as_deref()) else {
        return false;
    };
    let (Some(new_created), Some(stable_created)) = (new.created(), stable.created()) else {
        return false;
    };
    if new_created >= stable_created {
        return false;
    }
    let Some(revisions) = p
        .rollout
        .spec
        .rollback_window
        .as_ref()
        .and_then(|w| w.revisions)
        .filter(|r| *r > 0)
    else {
        return false;
    };
    let between = p
        .sets
        .all
        .iter()
        .filter(|rs| {
            !rs.annotations()
                .contains_key("experiment.argoproj.io/experiment-name")
        })
        .filter_map(|rs| rs.created())
        .filter(|created| *created < stable_created && new_created < *created)
        .count();
    i32::try_from(between).unwrap_or(i32::MAX) < revisions
}

/// Deletes old, fully scaled-down ReplicaSets beyond `revisionHistoryLimit` (default 10),
/// oldest first, with the AnalysisRuns of their revision.
pub fn cleanup_history(p: &mut Planner<'_>) {
    let limit =
        usize::try_from(p.rollout.spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
    let mut candidates: Vec<Arc<ReplicaSet>> = p
        .sets
        .others
        .iter()
        .filter(|rs| !rs.is_deleting())
        .cloned()
        .collect();
    if candidates.len() <= limit {
        return;
    }
    candidates.sort_by_key(|a| a.created());
    let excess = candidates.len() - limit;
    for rs in candidates.into_iter().take(excess) {
        let settled = rs.metadata.generation.unwrap_or(0)
            <= rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
        if rs.actual() != 0 || rs.desired() != 0 || !settled {
            continue;
        }
        p.plan.replica_set_deletes.push(rs.name_any());
        super::analysis::delete_runs_of_revision(p, rs.pod_hash());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    /// An old ReplicaSet, with a scale-down deadline at `deadline` when given.
    fn old(deadline: Option<Timestamp>) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        if let Some(deadline) = deadline {
            rs.metadata.annotations = Some(BTreeMap::from([(
                SCALE_DOWN_DEADLINE_ANNOTATION.to_string(),
                deadline.to_string(),
            )]));
        }
        rs
    }

    /// The decisions for old ReplicaSets visited newest first, as both strategies visit them.
    fn decide(
        sets: &[ReplicaSet],
        delay_seconds: i32,
        limit: Option<i32>,
    ) -> Vec<DelayedScaleDown> {
        let mut kept = 0;
        sets.iter()
            .map(|rs| delayed_scale_down(rs, at(0), delay_seconds, limit, &mut kept))
            .collect()
    }

    fn anti_affine_rollout() -> Rollout {
        use crate::api::{
            AntiAffinity, BlueGreenStrategy, RequiredAntiAffinity, RolloutSpec, RolloutStrategy,
        };
        let mut rollout = Rollout::new(
            "web",
            RolloutSpec {
                strategy: Some(RolloutStrategy {
                    blue_green: Some(BlueGreenStrategy {
                        active_service: "web-active".into(),
                        anti_affinity: Some(AntiAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                RequiredAntiAffinity {},
                            ),
                            preferred_during_scheduling_ignored_during_execution: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        rollout.metadata.namespace = Some("shop".into());
        rollout
    }

    fn with_hash(hash: &str) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.labels = Some(BTreeMap::from([(
            POD_TEMPLATE_HASH_LABEL.to_string(),
            hash.to_string(),
        )]));
        rs.spec = Some(ReplicaSetSpec {
            template: Some(PodTemplateSpec {
                spec: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        });
        rs
    }

    fn selected_hashes(anti: &PodAntiAffinity) -> Vec<String> {
        anti.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .filter_map(|t| t.label_selector.as_ref()?.match_expressions.clone())
            .flatten()
            .flat_map(|r| r.values.unwrap_or_default())
            .collect()
    }

    #[test]
    fn anti_affinity_follows_the_stable_revision_on_the_new_replica_set_only() {
        let rollout = anti_affine_rollout();
        // Created without the term (the first revision), gone back to beside revision b.
        let first = with_hash("a");
        let added = repointed_anti_affinity(&first, &rollout, "b").expect("the term added");
        assert_eq!(selected_hashes(&added), ["b"]);

        // Pointing at an older stable: re-pointed, not duplicated.
        let mut rs = with_hash("a");
        let template = rs.spec.as_mut().unwrap().template.as_mut().unwrap();
        template.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(added.clone()),
            ..Default::default()
        });
        let repointed = repointed_anti_affinity(&rs, &rollout, "c").expect("re-pointed");
        assert_eq!(selected_hashes(&repointed), ["c"]);
        assert_eq!(
            repointed_anti_affinity(&rs, &rollout, "b"),
            None,
            "in place"
        );

        // The stable revision itself, no stable yet, or no antiAffinity: nothing to do.
        assert_eq!(repointed_anti_affinity(&rs, &rollout, "a"), None);
        assert_eq!(repointed_anti_affinity(&first, &rollout, ""), None);
        let mut plain = rollout.clone();
        plain.spec.strategy = None;
        assert_eq!(repointed_anti_affinity(&rs, &plain, "c"), None);
    }

    #[test]
    fn an_old_replica_set_starts_its_delay_then_waits_for_its_deadline() {
        use DelayedScaleDown::*;
        assert_eq!(
            decide(&[old(None)], 30, None),
            [StartDelay(SignedDuration::from_secs(30))]
        );
        assert_eq!(
            decide(&[old(Some(at(10)))], 30, None),
            [Wait(SignedDuration::from_secs(10))]
        );
        assert_eq!(decide(&[old(Some(at(0)))], 30, None), [ScaleDown]);
        assert_eq!(
            decide(&[old(Some(at(-5)))], 30, None),
            [ScaleDown],
            "a deadline passed"
        );
    }

    #[test]
    fn the_revision_limit_keeps_only_the_newest_old_revisions_up() {
        use DelayedScaleDown::*;
        let sets = [old(None), old(Some(at(20))), old(Some(at(20))), old(None)];
        assert_eq!(
            decide(&sets, 30, Some(2)),
            [
                StartDelay(SignedDuration::from_secs(30)),
                Wait(SignedDuration::from_secs(20)),
                ScaleDown,
                ScaleDown,
            ]
        );
        assert_eq!(decide(&sets, 30, Some(0)), [ScaleDown; 4]);
    }

    #[test]
    fn an_expired_deadline_still_counts_against_the_limit() {
        use DelayedScaleDown::*;
        let sets = [old(Some(at(-1))), old(Some(at(20)))];
        assert_eq!(decide(&sets, 30, Some(1)), [ScaleDown, ScaleDown]);
    }

    #[test]
    fn without_a_delay_old_revisions_go_at_once_and_do_not_use_up_the_limit() {
        use DelayedScaleDown::*;
        // Revision 3 goes at once; revision 2, delayed before the delay was set to 0, keeps
        // the one place the limit leaves.
        let sets = [old(None), old(Some(at(20))), old(Some(at(20)))];
        assert_eq!(
            decide(&sets, 0, Some(1)),
            [ScaleDown, Wait(SignedDuration::from_secs(20)), ScaleDown]
        );
        assert_eq!(decide(&[old(None)], -5, None), [ScaleDown]);
    }
}
