//! `bench SCENARIO [flags]`: Ramp's benchmark harness. `bench --list` names the scenarios;
//! `bench SCENARIO --help` shows a scenario's flags. Each prints a table of medians and writes
//! `target/bench/SCENARIO.json`.

use anyhow::{Context as _, bail};
use ramp_e2e::bench::SCENARIOS;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ramp_e2e::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let usage = || {
        let names: Vec<String> = SCENARIOS
            .iter()
            .map(|s| format!("  {:10} {}", s.name, s.about))
            .collect();
        format!(
            "usage: bench SCENARIO [flags]   (bench SCENARIO --help for its flags)\nscenarios:\n{}",
            names.join("\n")
        )
    };
    let Some(name) = args.next() else {
        bail!("{}", usage())
    };
    if name == "--list" || name == "--help" || name == "-h" {
        println!("{}", usage());
        return Ok(());
    }
    let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
        bail!("unknown scenario {name:?}\n{}", usage())
    };
    let report = (scenario.run)(args.collect())
        .await
        .with_context(|| format!("bench {name}"))?;
    println!("{}", report.table());
    Ok(())
}
