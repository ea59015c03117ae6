//! `get rollout NAME [-w]` and `get analysisrun NAME`.
//!
//! With `--watch` the view is redrawn from watches of the Rollout, its ReplicaSets and pods and
//! the namespace's AnalysisRuns whenever one of them changes (the API is never polled). On a
//! terminal each frame replaces the previous one and ages are refreshed every second; into a
//! pipe or file every changed frame is appended, followed by an empty line.

use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use ramp_controller::api::{AnalysisRun, Rollout};
use ramp_controller::plugin::live::{Update, watch_rollout};
use ramp_controller::plugin::{RolloutView, Style, analysis, render};
use tokio::time::Instant;

use crate::cluster::{ANALYSIS_RUN, Cluster, ClusterArgs};
use crate::output::{self, CLEAR_SCREEN, Format, emit};

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(subcommand)]
    what: GetWhat,
}

#[derive(Subcommand, Debug)]
enum GetWhat {
    /// A Rollout with its revisions, ReplicaSets, pods and AnalysisRuns.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(GetRolloutArgs),
    /// An AnalysisRun: its verdict, metrics, conditions and latest measurements.
    #[command(visible_aliases = ["ar", "analysisruns"])]
    Analysisrun(GetRunArgs),
}

#[derive(Args, Debug)]
struct GetRolloutArgs {
    /// The Rollout's name.
    name: String,
    /// Keep the view up to date as the rollout progresses (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    watch: bool,
    /// Stop watching after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "watch")]
    timeout_seconds: Option<u64>,
    /// No colour, even on a terminal.
    #[arg(long)]
    no_color: bool,
    /// Print the Rollout object instead of the view.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
}

#[derive(Args, Debug)]
struct GetRunArgs {
    /// The AnalysisRun's name.
    name: String,
    /// No colour, even on a terminal.
    #[arg(long)]
    no_color: bool,
    /// Print the AnalysisRun object instead of the summary.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
}

pub async fn run(args: GetArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    match args.what {
        GetWhat::Rollout(args) => get_rollout(&cluster, args).await,
        GetWhat::Analysisrun(args) => get_analysis_run(&cluster, args).await,
    }
}

async fn get_rollout(cluster: &Cluster, args: GetRolloutArgs) -> anyhow::Result<ExitCode> {
    let (json, rollout) = cluster.rollout(&args.name).await?;
    let style = output::style(args.no_color);
    if !args.watch {
        match args.output {
            Some(format) => emit(&output::object_text(&json, format)?)?,
            None => {
                let objects = namespace_objects(cluster, &rollout).await?;
                let view = RolloutView::build(&rollout, &objects.0, &objects.1, &objects.2);
                emit(&render::rollout(&view, Timestamp::now(), style))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    watch(
        cluster,
        &rollout,
        args.output,
        style,
        args.timeout_seconds.map(Duration::from_secs),
    )
    .await
}

/// The ReplicaSets and pods carrying the Rollout's labels, and the namespace's AnalysisRuns.
async fn namespace_objects(
    cluster: &Cluster,
    rollout: &Rollout,
) -> anyhow::Result<(
    Vec<k8s_openapi::api::apps::v1::ReplicaSet>,
    Vec<k8s_openapi::api::core::v1::Pod>,
    Vec<AnalysisRun>,
)> {
    let params = match ramp_controller::plugin::live::pod_labels(rollout) {
        Some(selector) => ListParams::default().labels(&selector),
        None => ListParams::default(),
    };
    let namespace = &cluster.namespace;
    let replica_sets = Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(
        cluster.client.clone(),
        namespace,
    )
    .list(&params)
    .await
    .with_context(|| {
        format!(
            "listing the ReplicaSets of rollout {namespace}/{}",
            rollout.metadata.name.as_deref().unwrap_or("")
        )
    })?;
    let pods =
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(cluster.client.clone(), namespace)
            .list(&params)
            .await
            .with_context(|| {
                format!(
                    "listing the pods of rollout {namespace}/{}",
                    rollout.metadata.name.as_deref().unwrap_or("")
                )
            })?;
    let runs = Api::<AnalysisRun>::namespaced(cluster.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the AnalysisRuns of namespace {namespace}"))?;
    Ok((replica_sets.items, pods.items, runs.items))
}

async fn watch(
    cluster: &Cluster,
    rollout: &Rollout,
    format: Option<Format>,
    style: Style,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let terminal = output::is_terminal();
    let name = format!(
        "{}/{}",
        cluster.namespace,
        rollout.metadata.name.as_deref().unwrap_or_default()
    );
    let mut updates = pin!(watch_rollout(cluster.client.clone(), rollout));
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut ages = tokio::time::interval(Duration::from_secs(1));
    ages.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut latest: Option<RolloutView> = None;
    let mut latest_object: Option<Rollout> = None;
    let mut shown = String::new();
    let mut shown_view: Option<RolloutView> = None;
    loop {
        tokio::select! {
            update = updates.next() => match update {
                Some(Update::Snapshot(objects)) => {
                    let Some(rollout) = &objects.rollout else {
                        eprintln!("rollout {name} was deleted");
                        return Ok(ExitCode::FAILURE);
                    };
                    latest = RolloutView::from_objects(&objects);
                    if format.is_some() && latest_object.as_ref().map(|o| &o.metadata.resource_version) != Some(&rollout.metadata.resource_version) {
                        latest_object = Some(rollout.clone());
                        let json = serde_json::to_value(rollout)?;
                        let format = format.unwrap_or(Format::Yaml);
                        let separator = if format == Format::Yaml { "---\n" } else { "" };
                        emit(&format!("{separator}{}", output::object_text(&json, format)?))?;
                    }
                }
                Some(Update::WatchError(error)) => {
                    eprintln!("watching rollout {name}: {error} (retrying)");
                    continue;
                }
                None => return Ok(ExitCode::SUCCESS),
            },
            _ = ages.tick(), if terminal && format.is_none() => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = sleep_until(deadline) => return Ok(ExitCode::SUCCESS),
        }
        if format.is_some() {
            continue;
        }
        let Some(view) = &latest else { continue };
        // Into a pipe, a frame is written when what it shows changed, ages aside.
        if !terminal && shown_view.as_ref() == Some(view) {
            continue;
        }
        let frame = render::rollout(view, Timestamp::now(), style);
        if frame == shown {
            continue;
        }
        if terminal {
            emit(&format!("{CLEAR_SCREEN}{frame}"))?;
        } else {
            emit(&format!("{frame}\n"))?;
        }
        shown = frame;
        shown_view = Some(view.clone());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn get_analysis_run(cluster: &Cluster, args: GetRunArgs) -> anyhow::Result<ExitCode> {
    let (json, run): (_, AnalysisRun) = cluster.get(ANALYSIS_RUN, &args.name).await?;
    let text = match args.output {
        Some(format) => output::object_text(&json, format)?,
        None => analysis::render(
            &analysis::details(&run),
            Timestamp::now(),
            output::style(args.no_color),
        ),
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
