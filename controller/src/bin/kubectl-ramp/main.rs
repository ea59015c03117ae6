//! `kubectl ramp`: the kubectl plugin for Ramp (and for Argo Rollouts' API).

#![forbid(unsafe_code)]

mod actions;
mod cluster;
mod completion;
mod get;
mod lint;
mod list;
mod output;
mod set;
mod status;
mod suggest;
mod undo;
mod version;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cluster::ClusterArgs;

#[derive(Parser)]
#[command(
    name = "kubectl-ramp",
    bin_name = "kubectl ramp",
    version,
    about = "Manage Ramp rollouts"
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a rollout (as a tree of revisions, ReplicaSets, pods and AnalysisRuns) or an AnalysisRun.
    Get(get::GetArgs),
    /// List rollouts.
    List(list::ListArgs),
    /// Wait until a rollout is Healthy (exit 0) or Degraded (exit 1); for CI pipelines.
    Status(status::StatusArgs),
    /// Resume a paused rollout, or skip the current step (--full: skip them all).
    Promote(actions::PromoteArgs),
    /// Abort an update: all traffic back to the stable version.
    Abort(actions::NamesArgs),
    /// Start an aborted update again from its first step.
    Retry(actions::RetryArgs),
    /// Pause a rollout until it is promoted.
    Pause(actions::NamesArgs),
    /// Replace a rollout's pods, one ReplicaSet at a time.
    Restart(actions::RestartArgs),
    /// Go back to the pod template of an earlier revision.
    Undo(undo::UndoArgs),
    /// Change a rollout's container images.
    Set(set::SetArgs),
    /// Check Rollout, AnalysisTemplate, AnalysisRun and Experiment manifests offline.
    Lint(lint::LintArgs),
    /// Print the plugin's version.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(completion::CompletionArgs),
}

fn main() -> ExitCode {
    // Err only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let cluster = cli.cluster;
    let outcome = match cli.command {
        Command::Lint(args) => return lint::run(args),
        Command::Completion(args) => return completion::run(args, Cli::command()),
        Command::Version(args) => version::run(args),
        command => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run(command, &cluster)),
            Err(error) => Err(anyhow::anyhow!("cannot start the async runtime: {error}")),
        },
    };
    match outcome {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say.
        Err(error) if broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(command: Command, cluster: &ClusterArgs) -> anyhow::Result<ExitCode> {
    match command {
        Command::Get(args) => get::run(args, cluster).await,
        Command::List(args) => list::run(args, cluster).await,
        Command::Status(args) => status::run(args, cluster).await,
        Command::Promote(args) => actions::promote(args, cluster).await,
        Command::Abort(args) => actions::abort(args, cluster).await,
        Command::Retry(args) => actions::retry(args, cluster).await,
        Command::Pause(args) => actions::pause(args, cluster).await,
        Command::Restart(args) => actions::restart(args, cluster).await,
        Command::Undo(args) => undo::run(args, cluster).await,
        Command::Set(args) => set::run(args, cluster).await,
        Command::Lint(_) | Command::Version(_) | Command::Completion(_) => {
            Err(anyhow::anyhow!("this command does not use the cluster"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-ramp",
            "get",
            "rollout",
            "web",
            "-n",
            "shop",
            "--context",
            "kind",
        ])
        .unwrap();
        assert_eq!(cli.cluster.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.cluster.context.as_deref(), Some("kind"));
        let cli = Cli::try_parse_from([
            "kubectl-ramp",
            "-n",
            "prod",
            "status",
            "web",
            "--watch=false",
        ])
        .unwrap();
        assert_eq!(cli.cluster.namespace.as_deref(), Some("prod"));
    }
}
