//! `set image NAME CONTAINER=IMAGE` (`*=IMAGE` for every container): the Rollout is read,
//! its images changed and written back whole (an update guarded by its resourceVersion,
//! retried on conflict), as Argo's plugin does.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kube::api::{DynamicObject, PostParams};
use ramp_controller::plugin::patch::{parse_image_assignment, set_image};

use crate::cluster::{Cluster, ClusterArgs, ROLLOUT};
use crate::output::emit;

const ATTEMPTS: usize = 5;

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(subcommand)]
    what: SetWhat,
}

#[derive(Subcommand, Debug)]
enum SetWhat {
    /// Change the image of one container (CONTAINER=IMAGE) or of all (*=IMAGE).
    Image(SetImageArgs),
}

#[derive(Args, Debug)]
struct SetImageArgs {
    /// The Rollout's name.
    name: String,
    /// CONTAINER=IMAGE, or *=IMAGE for every container.
    #[arg(value_name = "CONTAINER=IMAGE")]
    assignment: String,
}

pub async fn run(args: SetArgs, cluster_args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let SetWhat::Image(args) = args.what;
    let (container, image) = parse_image_assignment(&args.assignment)?;
    let cluster = Cluster::connect(cluster_args).await?;
    let object = format!("{}/{}", cluster.namespace, args.name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut json, _) = cluster.rollout(&args.name).await?;
        let changed = set_image(&mut json, &object, &container, &image)?;
        if changed.is_empty() {
            emit(&format!(
                "rollout {object} already runs {image} in {}; nothing to do\n",
                containers(&container)
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
        let updated: DynamicObject =
            serde_json::from_value(json).context("re-encoding the rollout")?;
        match cluster
            .api(ROLLOUT)
            .replace(&args.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                emit(&format!(
                    "rollout {object}: image of {} set to {image}\n",
                    changed.join(", ")
                ))?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < ATTEMPTS => continue,
            Err(error) => return Err(cluster.explain(error, ROLLOUT, &args.name, "update").await),
        }
    }
}

fn containers(container: &str) -> String {
    if container == "*" {
        "every container".to_string()
    } else {
        format!("container {container}")
    }
}
