//! `undo NAME [--to-revision N]`: puts the pod template of an earlier revision's ReplicaSet back
//! into the Rollout (a JSON patch replacing `spec.template`), which starts a new update.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::ListParams;
use ramp_controller::plugin::live::pod_labels;
use ramp_controller::plugin::patch::{self, Undo};

use crate::cluster::{Cluster, ClusterArgs, ROLLOUT};
use crate::output::emit;

#[derive(Args, Debug)]
pub struct UndoArgs {
    /// The Rollout's name.
    name: String,
    /// The revision to go back to (default: the one before the newest).
    #[arg(long, value_name = "N")]
    to_revision: Option<i64>,
}

pub async fn run(args: UndoArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    let (json, rollout) = cluster.rollout(&args.name).await?;
    let object = format!("{}/{}", cluster.namespace, args.name);
    let params = match pod_labels(&rollout) {
        Some(selector) => ListParams::default().labels(&selector),
        None => ListParams::default(),
    };
    let replica_sets = Api::<ReplicaSet>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&params)
        .await
        .with_context(|| format!("listing the ReplicaSets of rollout {object}"))?;
    let to_revision = args.to_revision.filter(|r| *r != 0);
    let target = patch::undo_target(&rollout, &replica_sets.items, to_revision)?;
    match patch::undo(&json, target)? {
        Undo::AlreadyAt { revision } => {
            emit(&format!(
                "rollout {object} skipped rollback: its template already is that of revision {revision}\n"
            ))?;
        }
        Undo::Patch { patch, revision } => {
            cluster.json_patch(ROLLOUT, &args.name, &patch).await?;
            emit(&format!(
                "rollout {object} rolled back to the template of revision {revision}\n"
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
