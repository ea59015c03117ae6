//! Whether to sync now: Argo CD's automated-sync rules, and what to prune.
//!
//! - an automated sync is attempted once per revision; a failed attempt is retried only as
//!   `syncPolicy.retry` allows, with exponential backoff;
//! - after a successful sync of a revision, drift is reverted only with `selfHeal`, and not
//!   sooner than [`SELF_HEAL_PAUSE`] after the previous sync (so an object the API server
//!   keeps rewriting cannot make the reconciler apply in a loop);
//! - pruning everything because Git became empty needs `allowEmpty`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::application::OperationState;
use super::order::kind_rank;
use super::resource::{
    ResourceKey, SYNC_WAVE_ANNOTATION, annotation, has_sync_option, managing_app,
};
use super::spec::{Automation, RetryPolicy};

/// Shortest time between two self-heal syncs of the same revision.
pub const SELF_HEAL_PAUSE: Duration = Duration::from_secs(2);

/// What the comparison found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Objects in Git that differ live or are missing.
    pub out_of_sync: usize,
    /// Objects that left Git and may be pruned.
    pub prunable: usize,
    /// Objects in Git.
    pub desired: usize,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncDecision {
    /// Nothing to do.
    InSync,
    /// Out of sync, but no sync is due; the reason is shown to users.
    Skip(String),
    /// Sync now; `retry_count` is the number of retries this attempt makes for the revision.
    Sync {
        /// Retries made for this revision, including this attempt.
        retry_count: i64,
    },
    /// Sync once this much time has passed.
    Wait(Duration),
}

/// Decides whether an automated sync runs now. `since_last` is the time since the last
/// operation finished, if any.
pub fn decide(
    automation: Option<Automation>,
    retry: Option<RetryPolicy>,
    revision: &str,
    drift: Drift,
    last: Option<&OperationState>,
    since_last: Option<Duration>,
) -> SyncDecision {
    let prune = automation.is_some_and(|a| a.prune);
    // A sync recorded as Running was cut off (the controller stopped mid-sync): it is resumed,
    // in sync or not, so that it ends with a result and a history entry as it would have.
    if let Some(running) = last.filter(|op| op.phase == "Running") {
        return SyncDecision::Sync {
            retry_count: running.retry_count.unwrap_or(0),
        };
    }
    if drift.out_of_sync == 0 && drift.prunable == 0 {
        return SyncDecision::InSync;
    }
    let Some(automation) = automation else {
        return SyncDecision::Skip("automated sync is off (spec.syncPolicy.automated)".into());
    };
    if drift.out_of_sync == 0 && !prune {
        return SyncDecision::Skip(
            "only pruning is needed and automated prune is off (spec.syncPolicy.automated.prune)"
                .into(),
        );
    }
    if drift.desired == 0 && prune && !automation.allow_empty {
        return SyncDecision::Skip(format!(
            "Git revision {} has no objects: pruning all {} would empty the application; \
             set spec.syncPolicy.automated.allowEmpty to allow it",
            short(revision),
            drift.prunable
        ));
    }
    let Some(last) = last.filter(|op| last_revision(op) == Some(revision)) else {
        return SyncDecision::Sync { retry_count: 0 };
    };
    let since_last = since_last.unwrap_or(Duration::MAX);
    match last.phase.as_str() {
        "Succeeded" if automation.self_heal => {
            if since_last >= SELF_HEAL_PAUSE {
                SyncDecision::Sync { retry_count: 0 }
            } else {
                SyncDecision::Wait(SELF_HEAL_PAUSE - since_last)
            }
        }
        "Succeeded" => SyncDecision::Skip(format!(
            "revision {} was synced; drift is not reverted because selfHeal is off",
            short(revision)
        )),
        "Running" => SyncDecision::Sync {
            retry_count: last.retry_count.unwrap_or(0),
        },
        _ => {
            let retries = last.retry_count.unwrap_or(0);
            let allowed =
                retry.is_some_and(|r| r.limit.is_none_or(|limit| retries < i64::from(limit)));
            match retry.filter(|_| allowed) {
                Some(policy) => {
                    let delay = policy.delay(u32::try_from(retries).unwrap_or(u32::MAX));
                    if since_last >= delay {
                        SyncDecision::Sync {
                            retry_count: retries + 1,
                        }
                    } else {
                        SyncDecision::Wait(delay - since_last)
                    }
                }
                None => SyncDecision::Skip(format!(
                    "the sync of revision {} failed{}; push a fix or set spec.syncPolicy.retry",
                    short(revision),
                    if retries > 0 {
                        format!(" after {retries} retries")
                    } else {
                        String::new()
                    }
                )),
            }
        }
    }
}

/// The revision an operation synced (or tried to).
pub fn last_revision(op: &OperationState) -> Option<&str> {
    op.sync_result
        .as_ref()
        .map(|r| r.revision.as_str())
        .or_else(|| {
            op.operation
                .sync
                .as_ref()
                .and_then(|s| s.revision.as_deref())
        })
}

fn short(revision: &str) -> &str {
    revision.get(..10).unwrap_or(revision)
}

/// A live object that left Git.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneTarget {
    /// Identity.
    pub key: ResourceKey,
    /// apiVersion of the live object.
    pub api_version: String,
    /// Its sync wave.
    pub wave: i64,
    /// It asks not to be pruned (`Prune=false`).
    pub keep: bool,
}

/// Live objects of this application that are no longer in Git, in prune order: reverse wave,
/// reverse kind order, reverse name.
pub fn prune_targets<'a>(
    app_instance: &str,
    desired: &HashSet<&ResourceKey>,
    live: impl IntoIterator<Item = &'a Value>,
) -> Vec<PruneTarget> {
    let mut targets: Vec<PruneTarget> = live
        .into_iter()
        .filter(|object| managing_app(object).as_deref() == Some(app_instance))
        .filter(|object| {
            object
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_none()
        })
        .filter_map(|object| {
            let key = ResourceKey::of(object)?;
            if desired.contains(&key) {
                return None;
            }
            Some(PruneTarget {
                api_version: object.get("apiVersion")?.as_str()?.to_owned(),
                wave: annotation(object, SYNC_WAVE_ANNOTATION)
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(0),
                keep: has_sync_option(object, "Prune=false"),
                key,
            })
        })
        .collect();
    targets.sort_by(|a, b| {
        (b.wave, kind_rank(&b.key.kind), &b.key.name).cmp(&(
            a.wave,
            kind_rank(&a.key.kind),
            &a.key.name,
        ))
    });
    targets.dedup_by(|a, b| a.key == b.key);
    targets
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gitops::application::SyncOperationResult;
    use crate::gitops::resource::TRACKING_ANNOTATION;

    const AUTO: Automation = Automation {
        prune: true,
        self_heal: true,
        allow_empty: false,
    };
    const DRIFT: Drift = Drift {
        out_of_sync: 1,
        prunable: 0,
        desired: 3,
    };

    fn op(phase: &str, revision: &str, retries: i64) -> OperationState {
        OperationState {
            phase: phase.into(),
            retry_count: Some(retries),
            sync_result: Some(SyncOperationResult {
                revision: revision.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn retry(limit: Option<u32>) -> Option<RetryPolicy> {
        Some(RetryPolicy {
            limit,
            base: Duration::from_secs(5),
            factor: 2,
            max: Duration::from_secs(60),
        })
    }

    #[test]
    fn new_revisions_sync_and_in_sync_apps_do_not() {
        assert_eq!(
            decide(Some(AUTO), None, "abc", Drift::default(), None, None),
            SyncDecision::InSync
        );
        assert_eq!(
            decide(Some(AUTO), None, "abc", DRIFT, None, None),
            SyncDecision::Sync { retry_count: 0 }
        );
        let old = op("Failed", "old", 0);
        assert_eq!(
            decide(Some(AUTO), None, "new", DRIFT, Some(&old), None),
            SyncDecision::Sync { retry_count: 0 }
        );
        assert!(matches!(
            decide(None, None, "abc", DRIFT, None, None),
            SyncDecision::Skip(_)
        ));
    }

    #[test]
    fn a_sync_cut_off_while_running_is_resumed_even_in_sync() {
        let cut_off = op("Running", "abc", 1);
        assert_eq!(
            decide(
                Some(AUTO),
                None,
                "abc",
                Drift::default(),
                Some(&cut_off),
                None
            ),
            SyncDecision::Sync { retry_count: 1 }
        );
        assert_eq!(
            decide(Some(AUTO), None, "abc", DRIFT, Some(&cut_off), None),
            SyncDecision::Sync { retry_count: 1 }
        );
        let done = op("Succeeded", "abc", 0);
        assert_eq!(
            decide(Some(AUTO), None, "abc", Drift::default(), Some(&done), None),
            SyncDecision::InSync
        );
    }

    #[test]
    fn self_heal_reverts_drift_but_not_in_a_tight_loop() {
        let done = op("Succeeded", "abc", 0);
        let long_ago = Some(Duration::from_secs(60));
        assert_eq!(
            decide(Some(AUTO), None, "abc", DRIFT, Some(&done), long_ago),
            SyncDecision::Sync { retry_count: 0 }
        );
        let just_now = Some(Duration::from_millis(500));
        assert_eq!(
            decide(Some(AUTO), None, "abc", DRIFT, Some(&done), just_now),
            SyncDecision::Wait(Duration::from_millis(1500))
        );
        let no_heal = Automation {
            self_heal: false,
            ..AUTO
        };
        assert!(
            matches!(decide(Some(no_heal), None, "abc", DRIFT, Some(&done), long_ago), SyncDecision::Skip(m) if m.contains("selfHeal"))
        );
    }

    #[test]
    fn failed_syncs_retry_with_backoff_up_to_the_limit() {
        let failed = op("Failed", "abc", 0);
        assert!(
            matches!(decide(Some(AUTO), None, "abc", DRIFT, Some(&failed), None), SyncDecision::Skip(m) if m.contains("failed"))
        );
        let soon = Some(Duration::from_secs(2));
        assert_eq!(
            decide(
                Some(AUTO),
                retry(Some(2)),
                "abc",
                DRIFT,
                Some(&failed),
                soon
            ),
            SyncDecision::Wait(Duration::from_secs(3))
        );
        let later = Some(Duration::from_secs(5));
        assert_eq!(
            decide(
                Some(AUTO),
                retry(Some(2)),
                "abc",
                DRIFT,
                Some(&failed),
                later
            ),
            SyncDecision::Sync { retry_count: 1 }
        );
        let second = op("Failed", "abc", 1);
        assert_eq!(
            decide(
                Some(AUTO),
                retry(Some(2)),
                "abc",
                DRIFT,
                Some(&second),
                soon.map(|d| d * 4)
            ),
            SyncDecision::Wait(Duration::from_secs(2))
        );
        let exhausted = op("Failed", "abc", 2);
        assert!(matches!(
            decide(
                Some(AUTO),
                retry(Some(2)),
                "abc",
                DRIFT,
                Some(&exhausted),
                later
            ),
            SyncDecision::Skip(_)
        ));
        assert_eq!(
            decide(
                Some(AUTO),
                retry(None),
                "abc",
                DRIFT,
                Some(&exhausted),
                Some(Duration::from_secs(60))
            ),
            SyncDecision::Sync { retry_count: 3 }
        );
    }

    #[test]
    fn an_empty_render_never_prunes_everything_without_allow_empty() {
        let empty = Drift {
            out_of_sync: 0,
            prunable: 4,
            desired: 0,
        };
        assert!(
            matches!(decide(Some(AUTO), None, "abc", empty, None, None), SyncDecision::Skip(m) if m.contains("allowEmpty"))
        );
        let allowed = Automation {
            allow_empty: true,
            ..AUTO
        };
        assert_eq!(
            decide(Some(allowed), None, "abc", empty, None, None),
            SyncDecision::Sync { retry_count: 0 }
        );
        let no_prune = Automation {
            prune: false,
            ..AUTO
        };
        let prune_only = Drift {
            out_of_sync: 0,
            prunable: 1,
            desired: 2,
        };
        assert!(
            matches!(decide(Some(no_prune), None, "abc", prune_only, None, None), SyncDecision::Skip(m) if m.contains("prune"))
        );
    }

    fn live(kind: &str, name: &str, wave: &str, id: &str) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "ns",
            "annotations": {TRACKING_ANNOTATION: id, SYNC_WAVE_ANNOTATION: wave}}})
    }

    #[test]
    fn prune_targets_are_ours_gone_from_git_in_reverse_order() {
        let keep = ResourceKey::new("", "ConfigMap", "ns", "keep");
        let objects = [
            live("ConfigMap", "keep", "0", "app:/ConfigMap:ns/keep"),
            live("ConfigMap", "gone", "0", "app:/ConfigMap:ns/gone"),
            live("Service", "svc", "0", "app:/Service:ns/svc"),
            live("ConfigMap", "late", "3", "app:/ConfigMap:ns/late"),
            live("ConfigMap", "other", "0", "other:/ConfigMap:ns/other"),
            live("ConfigMap", "copy", "0", "app:/ConfigMap:ns/original"),
        ];
        let desired: HashSet<&ResourceKey> = [&keep].into_iter().collect();
        let targets = prune_targets("app", &desired, &objects);
        let names: Vec<&str> = targets.iter().map(|t| t.key.name.as_str()).collect();
        assert_eq!(names, ["late", "svc", "gone"]);
        let mut kept = live("ConfigMap", "stay", "0", "app:/ConfigMap:ns/stay");
        kept["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] = json!("Prune=false");
        assert!(prune_targets("app", &desired, [&kept])[0].keep);
    }
}
