//! `list rollouts [-A] [-w]`: a table of Rollouts; with `--watch`, a new line for each Rollout
//! whose row changed, in the columns of the first table (from a watch, never polling).

use std::collections::BTreeMap;
use std::pin::pin;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use ramp_controller::api::Rollout;
use ramp_controller::plugin::list::{RolloutRow, Table, rollout_row, sorted_rows};
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterArgs, ROLLOUT};
use crate::output::{self, Format, emit};

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(subcommand)]
    what: ListWhat,
}

#[derive(Subcommand, Debug)]
enum ListWhat {
    /// Rollouts with their strategy, status, step, weight and replicas.
    #[command(visible_aliases = ["rollout", "ro"])]
    Rollouts(ListRolloutsArgs),
}

#[derive(Args, Debug)]
struct ListRolloutsArgs {
    /// Rollouts of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Keep printing rows as Rollouts change (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    watch: bool,
    /// Print the Rollouts as a List object instead of a table.
    #[arg(short = 'o', long, value_enum, conflicts_with = "watch")]
    output: Option<Format>,
}

pub async fn run(args: ListArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    let ListWhat::Rollouts(args) = args.what;
    let resource = ApiResource::erase::<Rollout>(&());
    let api: Api<DynamicObject> = if args.all_namespaces {
        Api::all_with(cluster.client.clone(), &resource)
    } else {
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource)
    };
    let where_ = if args.all_namespaces {
        "any namespace".to_string()
    } else {
        format!("namespace {}", cluster.namespace)
    };
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            return Err(cluster.not_found(ROLLOUT, "").await);
        }
        Err(error) => return Err(cluster.explain(error, ROLLOUT, "*", "list").await),
    };
    let mut rollouts = Vec::new();
    for object in &list.items {
        match serde_json::to_value(object).and_then(serde_json::from_value::<Rollout>) {
            Ok(rollout) => rollouts.push(rollout),
            Err(error) => eprintln!(
                "skipping rollout {}/{}: it does not match the argoproj.io/v1alpha1 schema: {error}",
                object.namespace().unwrap_or_default(),
                object.name_any()
            ),
        }
    }
    if let Some(format) = args.output {
        let items: Vec<Value> = list
            .items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}});
        emit(&output::object_text(&list, format)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = sorted_rows(&rollouts);
    let table = Table::fit(&rows, args.all_namespaces);
    if rows.is_empty() && !args.watch {
        eprintln!("No rollouts found in {where_}.");
        return Ok(ExitCode::SUCCESS);
    }
    emit(&table.render(&rows))?;
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }

    let mut printed: BTreeMap<(String, String), RolloutRow> = rows
        .into_iter()
        .map(|row| ((row.namespace.clone(), row.name.clone()), row))
        .collect();
    let typed: Api<Rollout> = if args.all_namespaces {
        Api::all(cluster.client.clone())
    } else {
        Api::namespaced(cluster.client.clone(), &cluster.namespace)
    };
    let mut events = pin!(watcher(typed, watcher::Config::default()).default_backoff());
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(rollout) | watcher::Event::InitApply(rollout))) => {
                    let row = rollout_row(&rollout);
                    let key = (row.namespace.clone(), row.name.clone());
                    if printed.get(&key) != Some(&row) {
                        emit(&table.row(&row))?;
                        printed.insert(key, row);
                    }
                }
                Some(Ok(watcher::Event::Delete(rollout))) => {
                    printed.remove(&(rollout.namespace().unwrap_or_default(), rollout.name_any()));
                }
                Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
                Some(Err(error)) => eprintln!("watching rollouts in {where_}: {error} (retrying)"),
                None => return Ok(ExitCode::SUCCESS),
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
