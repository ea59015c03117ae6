//! `demo-app`: the demo application of Ramp's tests and playground, as a process. Serves HTTP,
//! answers 500 for `--error-rate` of its requests, and exports `http_requests_total{status,
//! version}` on `/metrics`. See `ramp_e2e::fixtures::demo_app` for the endpoints.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;
use ramp_e2e::fixtures::demo_app::{DemoAppConfig, DemoState, serve};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "demo-app",
    about = "A small HTTP service with a chosen error rate"
)]
struct Cli {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The version it reports (`version` label, answers).
    #[arg(long, default_value = "v1")]
    version: String,
    /// Share of requests answered 500, from 0.0 to 1.0 (a bad version: 0.1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Bearer token `/secure` expects.
    #[arg(long, env = "DEMO_APP_TOKEN")]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ramp_e2e::install_crypto_provider();
    let cli = Cli::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.error_rate),
        "--error-rate must be between 0.0 and 1.0, got {}",
        cli.error_rate
    );
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let config = DemoAppConfig {
        version: cli.version,
        error_rate: cli.error_rate,
        token: cli.token,
    };
    println!("listening on http://{address}");
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, DemoState::new(&config), stop.clone()));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stop.cancel();
    let _ = server.await;
    Ok(())
}
