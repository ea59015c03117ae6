//! `promote`, `abort`, `retry`, `pause` and `restart`: one patch each (see
//! `ramp_controller::plugin::patch`), one line saying what was done.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ramp_controller::plugin::age::human_duration;
use ramp_controller::plugin::patch::{self, PromotionOutcome};

use crate::cluster::{Cluster, ClusterArgs, ROLLOUT};
use crate::output::emit;

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The Rollout's name.
    name: String,
    /// Skip every remaining step, pause and analysis and go straight to the new version.
    #[arg(long)]
    full: bool,
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Rollout names.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// `rollout NAME…` (as Argo's plugin spells it) or just `NAME…`.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// The Rollout's name.
    name: String,
    /// Restart after this long (`30s`, `5m`) instead of now.
    #[arg(short = 'i', long = "in", value_name = "DURATION")]
    delay: Option<String>,
}

pub async fn promote(args: PromoteArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    let (_, rollout) = cluster.rollout(&args.name).await?;
    let object = format!("{}/{}", cluster.namespace, args.name);
    let promotion = patch::promote(&rollout, args.full);
    if let Some(status) = &promotion.status {
        let fallback = promotion.unified.clone().unwrap_or_else(|| status.clone());
        cluster
            .patch_status(ROLLOUT, &args.name, status, &fallback)
            .await?;
    }
    if let Some(spec) = &promotion.spec {
        cluster.patch(ROLLOUT, &args.name, spec).await?;
    }
    let line = match promotion.outcome {
        PromotionOutcome::Resumed => format!("rollout {object} promoted"),
        PromotionOutcome::SkippedStep { to_step } => {
            format!("rollout {object} promoted: skipped the current step, now at step {to_step}")
        }
        PromotionOutcome::Full => format!("rollout {object} fully promoted"),
        PromotionOutcome::Nothing if args.full => {
            format!("rollout {object} is already fully promoted; nothing to do")
        }
        PromotionOutcome::Nothing => {
            format!("rollout {object} is not paused and has no step left to skip; nothing to do")
        }
    };
    emit(&format!("{line}\n"))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn abort(args: NamesArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    for name in &args.names {
        let patch = patch::abort();
        cluster.patch_status(ROLLOUT, name, &patch, &patch).await?;
        emit(&format!("rollout {}/{name} aborted\n", cluster.namespace))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(args: RetryArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let names = rollout_names(&args.names)?;
    let cluster = Cluster::connect(cluster_args).await?;
    for name in names {
        let patch = patch::retry();
        cluster.patch_status(ROLLOUT, name, &patch, &patch).await?;
        emit(&format!("rollout {}/{name} retried\n", cluster.namespace))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `retry rollout web` and `retry web` both name the rollout web.
fn rollout_names(args: &[String]) -> anyhow::Result<&[String]> {
    match args.first().map(String::as_str) {
        Some("rollout" | "rollouts" | "ro") if args.len() > 1 => Ok(&args[1..]),
        Some("experiment" | "experiments" | "exp") => {
            bail!("Ramp does not run Experiments; only rollouts can be retried")
        }
        _ => Ok(args),
    }
}

pub async fn pause(args: NamesArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    for name in &args.names {
        cluster.patch(ROLLOUT, name, &patch::pause()).await?;
        emit(&format!("rollout {}/{name} paused\n", cluster.namespace))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restart(args: RestartArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let delay = match &args.delay {
        Some(text) => ramp_analysis::duration::parse_go_duration(text)
            .map_err(|e| anyhow::anyhow!("--in {text:?}: {e}"))?,
        None => std::time::Duration::ZERO,
    };
    let delay = SignedDuration::try_from(delay)
        .map_err(|e| anyhow::anyhow!("--in {:?}: {e}", args.delay))?;
    let cluster = Cluster::connect(cluster_args).await?;
    // Read first, so a missing rollout is reported as such rather than created by the patch.
    cluster.rollout(&args.name).await?;
    let at = Timestamp::now().checked_add(delay)?;
    cluster
        .patch(ROLLOUT, &args.name, &patch::restart(at))
        .await?;
    let when = if delay.is_zero() {
        "now".to_string()
    } else {
        format!("in {}", human_duration(delay))
    };
    emit(&format!(
        "rollout {}/{} restarts {when}\n",
        cluster.namespace, args.name
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_accepts_both_spellings() {
        let argo = vec!["rollout".to_string(), "web".to_string()];
        assert_eq!(rollout_names(&argo).unwrap(), &["web".to_string()]);
        let short = vec!["web".to_string(), "api".to_string()];
        assert_eq!(rollout_names(&short).unwrap(), &short[..]);
        // A rollout that is itself called "rollout".
        let named_rollout = vec!["rollout".to_string()];
        assert_eq!(rollout_names(&named_rollout).unwrap(), &named_rollout[..]);
        assert!(rollout_names(&["experiment".to_string(), "x".to_string()]).is_err());
    }
}
