//! What the playground prints while it plays: one line per event, stamped with the time since
//! it started, and one line each time the Rollout's state changes (phase, step, weight,
//! versions, analysis). Lines are plain text, so the output reads the same in a terminal, a
//! pipe or a CI log; on a terminal phases are coloured.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use ramp_analysis::api::AnalysisRun;
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_controller::plugin::model::current_set_weight;
use tokio_util::sync::CancellationToken;

use super::fleet::FleetState;
use super::manifests::{APP, STEPS};

/// Prints progress lines.
#[derive(Clone, Debug)]
pub struct Progress {
    began: Instant,
    color: bool,
}

impl Progress {
    pub fn new(color: bool) -> Self {
        Progress {
            began: Instant::now(),
            color,
        }
    }

    /// Time since the playground started.
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// `[  12.3s] text`.
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "[{:>6.1}s] {text}", self.began.elapsed().as_secs_f64());
        let _ = out.flush();
    }

    /// A chapter's heading.
    pub fn heading(&self, text: &str) {
        let text = if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn phase(&self, phase: &str) -> String {
        if !self.color {
            return phase.to_string();
        }
        let code = match phase {
            "Healthy" | "Successful" => "32",
            "Degraded" | "Failed" | "Error" => "31",
            "Paused" | "Inconclusive" => "33",
            _ => "36",
        };
        format!("\x1b[{code}m{phase}\x1b[0m")
    }
}

/// The Rollout as one progress line shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutState {
    pub phase: String,
    pub message: String,
    pub step: Option<i32>,
    pub set_weight: i32,
    pub traffic_weight: u8,
    pub stable: String,
    pub canary: String,
    pub analysis: String,
}

impl RolloutState {
    fn render(&self, progress: &Progress) -> String {
        let mut text = format!("rollout {APP}: {}", progress.phase(&self.phase));
        if !self.message.is_empty() {
            text.push_str(&format!(" ({})", self.message));
        }
        if let Some(step) = self.step {
            text.push_str(&format!(", step {step}/{STEPS}"));
        }
        text.push_str(&format!(", stable {}", self.stable));
        if !self.canary.is_empty() {
            text.push_str(&format!(
                ", canary {} setWeight {}% (traffic {}%)",
                self.canary, self.set_weight, self.traffic_weight
            ));
        }
        if !self.analysis.is_empty() {
            text.push_str(&format!(", analysis {}", progress.phase(&self.analysis)));
        }
        text
    }
}

/// Reads the Rollout's state as a line shows it.
pub async fn rollout_state(
    client: &Client,
    namespace: &str,
    fleet: &FleetState,
) -> Option<RolloutState> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let rollout = rollouts.get_opt(APP).await.ok()??;
    // Nothing to show before the controller's first status.
    let status = rollout.status.clone().filter(|s| s.phase.is_some())?;
    let version = |hash: &Option<String>| {
        hash.as_deref()
            .map(|h| {
                fleet
                    .backend(h)
                    .map_or_else(|| h.to_string(), |b| b.version)
            })
            .unwrap_or_default()
    };
    let progressing = status.stable_rs.is_some()
        && status.current_pod_hash.is_some()
        && status.current_pod_hash != status.stable_rs;
    let analysis = match &status.current_pod_hash {
        Some(hash) if progressing => latest_run(client, namespace, hash)
            .await
            .and_then(|run| run.status)
            .and_then(|s| s.phase)
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(RolloutState {
        phase: status
            .phase
            .map(RolloutPhase::as_str)
            .unwrap_or("-")
            .to_string(),
        message: status.message.clone().unwrap_or_default(),
        step: progressing.then_some(status.current_step_index).flatten(),
        set_weight: current_set_weight(&rollout),
        traffic_weight: fleet.weight(),
        stable: version(&status.stable_rs),
        canary: if progressing {
            version(&status.current_pod_hash)
        } else {
            String::new()
        },
        analysis,
    })
}

/// The newest AnalysisRun of the ReplicaSet with pod-template hash `hash`.
pub async fn latest_run(client: &Client, namespace: &str, hash: &str) -> Option<AnalysisRun> {
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), namespace);
    let list = runs.list(&ListParams::default()).await.ok()?;
    list.items
        .into_iter()
        .filter(|run| run.name_any().contains(hash))
        .max_by_key(|run| run.creation_timestamp())
}

/// Prints a line each time the Rollout's state changes, until cancelled.
pub fn follow_rollout(
    client: Client,
    namespace: String,
    fleet: Arc<FleetState>,
    progress: Progress,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<RolloutState> = None;
        loop {
            if let Some(state) = rollout_state(&client, &namespace, &fleet).await
                && last.as_ref() != Some(&state)
            {
                progress.line(&state.render(&progress));
                last = Some(state);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
}
