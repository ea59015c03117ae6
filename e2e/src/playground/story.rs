//! The story the playground plays, one chapter per thing Ramp does, each checked:
//!
//! 1. the root Application syncs the demo app from Git and the Rollout becomes Healthy;
//! 2. a commit of a healthy version rolls out step by step, passes analysis, is promoted;
//! 3. a commit of a faulty version fails analysis, is aborted, traffic returns to stable;
//! 4. reverting that commit brings the Rollout back to Healthy on the healthy version.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::api::PostParams;
use kube::{Api, Client};
use ramp_analysis::api::AnalysisPhase;
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_controller::gitops::Application;
use serde_json::json;

use super::fleet::FleetState;
use super::manifests::{self, APP, FAULTY, HEALTHY, ROLLOUT_PATH, ROOT_APP, Version};
use super::progress::{Progress, latest_run};
use super::world::World;
use crate::fixtures::gitops::{application, summary};
use crate::fixtures::loadgen::Counts;
use crate::fixtures::rollouts::{healthy, phase};

/// Longest a chapter waits for one thing to happen.
const WAIT: Duration = Duration::from_secs(90);

/// The chapters, in order.
pub const CHAPTERS: [&str; 4] = [
    "initial sync",
    "healthy version",
    "faulty version",
    "revert",
];

/// A chapter that did not end as expected.
#[derive(Debug, thiserror::Error)]
#[error("chapter {number} ({name}) failed: {reason}")]
pub struct ChapterFailed {
    pub number: usize,
    pub name: &'static str,
    pub reason: String,
}

/// How one chapter went.
#[derive(Clone, Debug)]
pub struct ChapterReport {
    pub name: &'static str,
    pub took: Duration,
    pub outcome: String,
}

/// How the story went.
#[derive(Clone, Debug, Default)]
pub struct StoryReport {
    pub chapters: Vec<ChapterReport>,
    /// What the faulty canary answered before it was aborted.
    pub faulty_canary: Counts,
    /// The Rollout at the end.
    pub final_state: String,
}

/// Plays every chapter; stops at the first that fails.
pub async fn play(world: &World, progress: &Progress) -> Result<StoryReport, ChapterFailed> {
    let mut story = Story {
        world,
        progress,
        report: StoryReport::default(),
        healthy_hash: String::new(),
    };
    for (index, name) in CHAPTERS.iter().enumerate() {
        progress.heading(&format!("Chapter {}/{}: {name}", index + 1, CHAPTERS.len()));
        let began = Instant::now();
        let outcome = match index {
            0 => story.initial_sync().await,
            1 => story.healthy_version().await,
            2 => story.faulty_version().await,
            _ => story.revert().await,
        };
        let outcome = outcome.map_err(|reason| ChapterFailed {
            number: index + 1,
            name,
            reason,
        })?;
        let took = began.elapsed();
        progress.line(&format!(
            "chapter {} done in {:.1}s: {outcome}",
            index + 1,
            took.as_secs_f64()
        ));
        story.report.chapters.push(ChapterReport {
            name,
            took,
            outcome,
        });
    }
    story.report.final_state = story.final_state().await;
    Ok(story.report)
}

struct Story<'a> {
    world: &'a World,
    progress: &'a Progress,
    report: StoryReport,
    /// The pod-template hash of the healthy version (chapter 2).
    healthy_hash: String,
}

impl Story<'_> {
    fn client(&self) -> Client {
        self.world.cluster.client()
    }

    fn ns(&self) -> &str {
        &self.world.namespace
    }

    fn fleet(&self) -> &FleetState {
        &self.world.fleet.state
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client(), self.ns())
    }

    fn apps(&self) -> Api<Application> {
        Api::namespaced(self.client(), self.ns())
    }

    /// Polls `check` every 100 ms until it returns `Some`, failing after [`WAIT`] with `what`
    /// and the last state seen.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, String>>,
    {
        let began = Instant::now();
        loop {
            if let Some(value) = check().await? {
                return Ok(value);
            }
            if let Some(failure) = self.fleet().failure() {
                return Err(format!(
                    "the demo processes stopped following the cluster: {failure}"
                ));
            }
            if began.elapsed() > WAIT {
                let rollout = self.rollouts().get_opt(APP).await.ok().flatten();
                let state = rollout
                    .and_then(|r| r.status)
                    .map(|s| {
                        format!(
                            "phase {:?} ({}), step {:?}, stable {:?}, current {:?}, abort {:?}",
                            s.phase,
                            s.message.unwrap_or_default(),
                            s.current_step_index,
                            s.stable_rs,
                            s.current_pod_hash,
                            s.abort
                        )
                    })
                    .unwrap_or_else(|| "no Rollout status".into());
                return Err(format!(
                    "timed out after {WAIT:?} waiting for {what}; Rollout {APP}: {state}; logs in {}",
                    self.world.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn rollout(&self) -> Result<Option<Rollout>, String> {
        self.rollouts()
            .get_opt(APP)
            .await
            .map_err(|e| format!("reading Rollout {APP}: {e}"))
    }

    /// Waits until Application `name` is Synced at `revision` (and Healthy when asked).
    async fn synced(&self, name: &str, revision: &str, want_healthy: bool) -> Result<(), String> {
        let apps = self.apps();
        self.until(
            &format!("Application {name} Synced at {}", short(revision)),
            || async {
                let Some(app) = apps
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading Application {name}: {e}"))?
                else {
                    return Ok(None);
                };
                let (sync, at, health) = summary(&app);
                Ok(
                    (sync == "Synced" && at == revision && (!want_healthy || health == "Healthy"))
                        .then_some(()),
                )
            },
        )
        .await?;
        self.progress.line(&format!(
            "application {name}: Synced at {}",
            short(revision)
        ));
        Ok(())
    }

    /// Commits the Rollout at `version` and announces it through the webhook.
    async fn commit_version(&self, version: Version, message: &str) -> Result<String, String> {
        let repo = &self.world.repo;
        repo.write(ROLLOUT_PATH, &manifests::rollout(version))
            .map_err(|e| format!("writing {ROLLOUT_PATH}: {e}"))?;
        let commit = repo
            .commit(message)
            .map_err(|e| format!("committing {message:?}: {e}"))?;
        self.progress
            .line(&format!("git: committed {} {message:?}", short(&commit)));
        self.world.push().await?;
        Ok(commit)
    }

    /// Waits until the Rollout is Healthy with its stable ReplicaSet serving `tag`.
    async fn healthy_on(&self, tag: &str) -> Result<Rollout, String> {
        self.until(&format!("Rollout {APP} Healthy on {tag}"), || async {
            let Some(rollout) = self.rollout().await? else {
                return Ok(None);
            };
            let stable = rollout.status.as_ref().and_then(|s| s.stable_rs.clone());
            let serving = stable
                .and_then(|h| self.fleet().backend(&h))
                .is_some_and(|b| b.version == tag);
            Ok((healthy(&rollout) && serving).then_some(rollout))
        })
        .await
    }

    async fn initial_sync(&mut self) -> Result<String, String> {
        let world = self.world;
        let root = application(
            ROOT_APP,
            self.ns(),
            &world.daemon.url(),
            "apps",
            json!({"prune": true, "selfHeal": true}),
        );
        self.apps()
            .create(&PostParams::default(), &root)
            .await
            .map_err(|e| format!("creating Application {ROOT_APP}: {e}"))?;
        self.progress.line(&format!(
            "application {ROOT_APP} created: {} path apps/",
            world.daemon.url()
        ));
        let head = world.repo.head().map_err(|e| e.to_string())?;
        self.synced(ROOT_APP, &head, false).await?;
        self.synced(APP, &head, true).await?;
        let rollout = self.healthy_on(manifests::FIRST.tag).await?;
        let hash = stable_hash(&rollout)?;
        self.until("requests answered by version 1.0", || async {
            Ok((self.fleet().served_by(&hash).ok > 0).then_some(()))
        })
        .await?;
        Ok(format!(
            "Rollout {APP} Healthy on {}:{} and serving traffic",
            manifests::IMAGE,
            manifests::FIRST.tag
        ))
    }

    async fn healthy_version(&mut self) -> Result<String, String> {
        let before = stable_hash(&self.rollout().await?.ok_or("the Rollout is gone")?)?;
        let commit = self.commit_version(HEALTHY, "demo 2.0").await?;
        self.synced(APP, &commit, false).await?;
        // Record the steps the canary is seen at, to check it went through them in order.
        let seen = RefCell::new(BTreeSet::new());
        let (this, before, seen_ref) = (&*self, before.as_str(), &seen);
        let promoted = this
            .until("the 2.0 canary to be promoted", || async move {
                let Some(rollout) = this.rollout().await? else {
                    return Ok(None);
                };
                let status = rollout.status.clone().unwrap_or_default();
                if status.abort == Some(true) {
                    return Err(format!(
                        "the healthy canary was aborted: {}",
                        status.message.unwrap_or_default()
                    ));
                }
                if status.current_pod_hash != status.stable_rs
                    && let Some(step) = status.current_step_index
                {
                    seen_ref.borrow_mut().insert(step);
                }
                let done =
                    healthy(&rollout) && status.stable_rs.as_deref().is_some_and(|s| s != before);
                Ok(done.then_some(rollout))
            })
            .await?;
        let seen = seen.into_inner();
        let hash = stable_hash(&promoted)?;
        let version = self
            .fleet()
            .backend(&hash)
            .map(|b| b.version)
            .unwrap_or_default();
        if version != HEALTHY.tag {
            return Err(format!(
                "promoted ReplicaSet {hash} runs {version:?}, not {}",
                HEALTHY.tag
            ));
        }
        // The pauses and the analysis last seconds: each must have been seen.
        for step in [1, 2, 4] {
            if !seen.contains(&step) {
                return Err(format!(
                    "the canary was never seen at step {step} (seen: {seen:?})"
                ));
            }
        }
        let run = latest_run(&self.client(), self.ns(), &hash)
            .await
            .ok_or(format!("no AnalysisRun for the 2.0 ReplicaSet {hash}"))?;
        let run_phase = run
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if run_phase != AnalysisPhase::Successful {
            return Err(format!(
                "AnalysisRun of 2.0 is {}, not Successful",
                run_phase.as_str()
            ));
        }
        let served = self.fleet().served_by(&hash);
        if served.ok == 0 {
            return Err("the 2.0 canary served no request".into());
        }
        self.healthy_hash = hash;
        Ok(format!(
            "2.0 went through steps {seen:?}, passed analysis and was promoted; {} requests answered by 2.0 so far, {} failed",
            served.total(),
            served.errors
        ))
    }

    async fn faulty_version(&mut self) -> Result<String, String> {
        let commit = self.commit_version(FAULTY, "demo 3.0").await?;
        self.synced(APP, &commit, false).await?;
        let aborted = self
            .until("the 3.0 canary to be aborted", || async {
                let Some(rollout) = self.rollout().await? else {
                    return Ok(None);
                };
                let status = rollout.status.clone().unwrap_or_default();
                if status.stable_rs.as_deref() != Some(self.healthy_hash.as_str()) {
                    return Err(format!(
                        "the faulty version was promoted: stable is now {:?}",
                        status.stable_rs
                    ));
                }
                Ok(
                    (status.abort == Some(true) && phase(&rollout) == Some(RolloutPhase::Degraded))
                        .then_some(rollout),
                )
            })
            .await?;
        let canary = aborted
            .status
            .as_ref()
            .and_then(|s| s.current_pod_hash.clone())
            .ok_or("the aborted Rollout names no canary")?;
        let run = latest_run(&self.client(), self.ns(), &canary)
            .await
            .ok_or(format!("no AnalysisRun for the 3.0 ReplicaSet {canary}"))?;
        let status = run.status.clone().unwrap_or_default();
        if status.phase != Some(AnalysisPhase::Failed) {
            return Err(format!(
                "AnalysisRun of 3.0 is {:?}, not Failed",
                status.phase
            ));
        }
        self.progress.line(&format!(
            "analysis: {}",
            status.message.clone().unwrap_or_default()
        ));
        // Traffic goes back to stable: the canary's share drops to 0 and its count stops.
        self.until("traffic back on stable", || async {
            Ok((self.fleet().weight() == 0).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let served = self.fleet().served_by(&canary);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later = self.fleet().served_by(&canary);
        if later.total() != served.total() {
            return Err(format!(
                "the aborted canary still gets requests: {} then {} two seconds later",
                served.total(),
                later.total()
            ));
        }
        if served.errors == 0 {
            return Err(format!(
                "the faulty canary {canary} answered no 5xx ({served:?}); requests by version: {:?}",
                self.fleet().served_by_version()
            ));
        }
        self.report.faulty_canary = served;
        Ok(format!(
            "3.0 failed analysis and was aborted; it served {} requests ({} answered 500) before traffic returned to 2.0",
            served.total(),
            served.errors
        ))
    }

    async fn revert(&mut self) -> Result<String, String> {
        let commit = self
            .world
            .repo
            .revert_head()
            .map_err(|e| format!("reverting demo 3.0: {e}"))?;
        self.progress.line(&format!(
            "git: committed {} (revert of demo 3.0)",
            short(&commit)
        ));
        self.world.push().await?;
        self.synced(APP, &commit, true).await?;
        let rollout = self.healthy_on(HEALTHY.tag).await?;
        let status = rollout.status.unwrap_or_default();
        if status.stable_rs.as_deref() != Some(self.healthy_hash.as_str()) {
            return Err(format!(
                "stable is {:?}, not the 2.0 ReplicaSet {}",
                status.stable_rs, self.healthy_hash
            ));
        }
        if status.abort == Some(true) {
            return Err("the Rollout is still aborted after the revert".into());
        }
        let before = self.fleet().served_by(&self.healthy_hash);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = self.fleet().served_by(&self.healthy_hash);
        let answered = after.total() - before.total();
        if answered == 0 || after.errors != before.errors {
            return Err(format!(
                "2.0 should answer every request without errors: {answered} requests, {} errors in 2s",
                after.errors - before.errors
            ));
        }
        Ok(format!(
            "Rollout {APP} Healthy on 2.0 again; {answered} requests in the last 2s, all answered by 2.0 without errors"
        ))
    }

    async fn final_state(&self) -> String {
        let rollout = self.rollout().await.ok().flatten();
        let status = rollout
            .as_ref()
            .and_then(|r| r.status.clone())
            .unwrap_or_default();
        let stable = status
            .stable_rs
            .as_deref()
            .and_then(|h| self.fleet().backend(h))
            .map(|b| b.version)
            .unwrap_or_default();
        format!(
            "Rollout {APP} {} on {}:{stable}, {}/{} replicas available",
            status.phase.map(RolloutPhase::as_str).unwrap_or("-"),
            manifests::IMAGE,
            status.available_replicas.unwrap_or(0),
            manifests::REPLICAS,
        )
    }
}

fn stable_hash(rollout: &Rollout) -> Result<String, String> {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.stable_rs.clone())
        .ok_or_else(|| format!("Rollout {APP} names no stable ReplicaSet"))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}
