//! `version`: the plugin's version and the platform it was built for.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::output::{self, Format, emit};

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print only the version number.
    #[arg(long)]
    short: bool,
    /// Print as JSON or YAML.
    #[arg(short = 'o', long, value_enum, conflicts_with = "short")]
    output: Option<Format>,
}

pub fn run(args: VersionArgs) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    let platform = format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH);
    let text = match (args.short, args.output) {
        (true, _) => format!("v{version}\n"),
        (false, Some(format)) => output::object_text(
            &json!({"kubectl-ramp": {"version": format!("v{version}"), "platform": platform}}),
            format,
        )?,
        (false, None) => format!("kubectl-ramp: v{version}\n  Platform: {platform}\n"),
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
