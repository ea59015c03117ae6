//! The playground: Ramp's main job end to end in one command, on a private local cluster.
//!
//! ```text
//!   git repo ──(push webhook)──▶ GitOps reconciler ──▶ Application root ──▶ Application demo
//!                                                       Services, AnalysisTemplate, Rollout demo
//!   Rollout controller ──▶ ReplicaSets ──▶ demo-app processes (fleet) ◀── load generator (50 rps)
//!   AnalysisRun runner ──▶ Prometheus (1 s scrapes of the demo processes) ──▶ verdicts
//! ```
//!
//! [`world`] starts everything, [`story`] plays the chapters and checks each, [`progress`]
//! prints what happens, [`fleet`] keeps one real demo process per ReplicaSet, [`manifests`]
//! holds what is in Git. The binary (`src/bin/playground.rs`) parses flags and handles Ctrl-C.

pub mod fleet;
pub mod manifests;
pub mod progress;
pub mod story;
pub mod world;

use std::future::Future;
use std::path::PathBuf;

use progress::Progress;
use story::{ChapterFailed, StoryReport};
use world::World;

/// How to run the playground.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep everything running after the story until `interrupted`.
    pub keep_running: bool,
    /// Colour on a terminal.
    pub color: bool,
    /// Where logs go.
    pub dir: PathBuf,
}

/// Why the playground did not finish its story.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    #[error("setting up: {0}")]
    Setup(String),
    #[error(transparent)]
    Chapter(#[from] ChapterFailed),
    #[error("interrupted")]
    Interrupted,
}

/// Starts everything, plays the story, prints the summary, and (with `keep_running`) waits for
/// `interrupted`; then stops everything. `interrupted` also cuts the story short.
pub async fn run(
    options: Options,
    interrupted: impl Future<Output = ()>,
) -> Result<StoryReport, PlaygroundError> {
    let progress = Progress::new(options.color);
    let mut interrupted = std::pin::pin!(interrupted);
    progress.heading("Setting up");
    let world = tokio::select! {
        world = World::start(options.dir.clone(), &progress) => world.map_err(PlaygroundError::Setup)?,
        () = &mut interrupted => return Err(PlaygroundError::Interrupted),
    };
    let follower_stop = tokio_util::sync::CancellationToken::new();
    let follower = progress::follow_rollout(
        world.cluster.client(),
        world.namespace.clone(),
        world.fleet.state.clone(),
        progress.clone(),
        follower_stop.clone(),
    );
    let outcome = tokio::select! {
        report = story::play(&world, &progress) => report.map_err(PlaygroundError::from),
        () = &mut interrupted => Err(PlaygroundError::Interrupted),
    };
    follower_stop.cancel();
    let _ = follower.await;
    if let Ok(report) = &outcome {
        print_summary(report, &world, &progress);
        if options.keep_running {
            println!(
                "\nEverything keeps running (--keep-running); press Ctrl-C to stop it.\n  \
                 git repository: {} (commit there, the reconciler polls every 5s)",
                world.repo.path().display()
            );
            interrupted.await;
        }
    }
    progress.line("stopping the demo processes, Ramp, git daemon, Prometheus and the cluster");
    world.stop().await;
    outcome
}

fn print_summary(report: &StoryReport, world: &World, progress: &Progress) {
    progress.heading("Summary");
    for (index, chapter) in report.chapters.iter().enumerate() {
        println!(
            "  {}. {:<16} {:>6.1}s  {}",
            index + 1,
            chapter.name,
            chapter.took.as_secs_f64(),
            chapter.outcome
        );
    }
    let faulty = report.faulty_canary;
    println!(
        "  requests served by the faulty canary: {} ({} answered 500)",
        faulty.total(),
        faulty.errors
    );
    let served = world.fleet.state.served_by_version();
    let by_version: Vec<String> = served
        .iter()
        .map(|(version, counts)| format!("{version}: {} ({} 500s)", counts.total(), counts.errors))
        .collect();
    println!("  requests by version: {}", by_version.join(", "));
    println!("  final state: {}", report.final_state);
    println!("  total: {:.1}s", progress.elapsed().as_secs_f64());
    let kubeconfig = world.cluster.kubeconfig_path().display();
    println!(
        "  kubeconfig: {kubeconfig}\n    KUBECONFIG={kubeconfig} kubectl -n {ns} get rollouts,replicasets,analysisruns,applications\n    KUBECONFIG={kubeconfig} kubectl ramp -n {ns} get rollout {app}",
        ns = world.namespace,
        app = manifests::APP
    );
    println!("  logs: {}", world.dir.display());
}
