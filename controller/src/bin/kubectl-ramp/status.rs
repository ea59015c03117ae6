//! `status NAME [--watch] [--timeout D]`, for CI pipelines: waits (by default) until the
//! rollout is Healthy or Degraded, printing each new status line.
//!
//! Exit status: 0 Healthy; 1 Degraded (aborted, timed out progressing, invalid spec);
//! 2 the `--timeout` passed first (or usage error); 3 the rollout could not be read.
//! Without `--watch` the current status is printed and only Degraded fails.

use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_controller::plugin::phase::displayed_phase;

use crate::cluster::{Cluster, ClusterArgs};
use crate::output::emit;

pub const DEGRADED: u8 = 1;
pub const TIMED_OUT: u8 = 2;
pub const UNREADABLE: u8 = 3;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The Rollout's name.
    name: String,
    /// Wait until the rollout is Healthy or Degraded (`--watch=false` prints once).
    #[arg(short = 'w', long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    watch: bool,
    /// Give up after this long (`90s`, `5m`; 0 waits forever).
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    ramp_analysis::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// `Phase - message`, or the phase alone.
fn line(phase: RolloutPhase, message: &str) -> String {
    if message.is_empty() {
        format!("{phase}\n")
    } else {
        format!("{phase} - {message}\n")
    }
}

pub async fn run(args: StatusArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = match Cluster::connect(cluster_args).await {
        Ok(cluster) => cluster,
        Err(error) => return Ok(unreadable(error)),
    };
    let rollout = match cluster.rollout(&args.name).await {
        Ok((_, rollout)) => rollout,
        Err(error) => return Ok(unreadable(error)),
    };
    let (phase, message) = displayed_phase(&rollout);
    if !args.watch {
        emit(&line(phase, &message))?;
        return Ok(if phase == RolloutPhase::Degraded {
            ExitCode::from(DEGRADED)
        } else {
            ExitCode::SUCCESS
        });
    }

    let api: Api<Rollout> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name));
    let mut events = pin!(watcher(api, config).default_backoff().applied_objects());
    let timeout = args.timeout.filter(|t| !t.is_zero());
    let deadline = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = pin!(deadline);
    let mut printed = String::new();
    let mut report = |phase: RolloutPhase, message: &str| -> anyhow::Result<Option<ExitCode>> {
        let text = line(phase, message);
        if text != printed {
            emit(&text)?;
            printed = text;
        }
        Ok(match phase {
            RolloutPhase::Healthy => Some(ExitCode::SUCCESS),
            RolloutPhase::Degraded => Some(ExitCode::from(DEGRADED)),
            RolloutPhase::Progressing | RolloutPhase::Paused => None,
        })
    };
    if let Some(code) = report(phase, &message)? {
        return Ok(code);
    }
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(rollout)) => {
                    let (phase, message) = displayed_phase(&rollout);
                    if let Some(code) = report(phase, &message)? {
                        return Ok(code);
                    }
                }
                Some(Err(error)) => eprintln!("watching rollout {}/{}: {error} (retrying)", cluster.namespace, args.name),
                None => return Ok(ExitCode::from(UNREADABLE)),
            },
            _ = &mut deadline => {
                eprintln!(
                    "error: rollout {}/{} was not Healthy after {}",
                    cluster.namespace,
                    args.name,
                    ramp_controller::plugin::age::human_duration(
                        k8s_openapi::jiff::SignedDuration::try_from(timeout.unwrap_or_default()).unwrap_or_default()
                    )
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::from(TIMED_OUT)),
        }
    }
}

fn unreadable(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(UNREADABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_timeouts() {
        assert_eq!(line(RolloutPhase::Healthy, ""), "Healthy\n");
        assert_eq!(
            line(RolloutPhase::Paused, "CanaryPauseStep"),
            "Paused - CanaryPauseStep\n"
        );
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert!(parse_timeout("soon").is_err());
    }
}
