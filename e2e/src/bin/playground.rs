//! `playground`: Ramp's main job end to end on a private local cluster — a commit of a healthy
//! version promoted step by step, a faulty one aborted by analysis on real Prometheus metrics,
//! and a revert — with plain progress lines and a summary. See `ramp_e2e::playground`.
//!
//! ```text
//! playground [--keep-running]
//! ```
//!
//! Exits 0 when every chapter ended as expected, 1 naming the chapter that did not, 130 on
//! Ctrl-C (everything it started is stopped first).

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ramp_e2e::fixtures::demo_app::{DemoAppConfig, DemoState, serve};
use ramp_e2e::playground::{self, Options, PlaygroundError};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "playground",
    about = "Ramp end to end: GitOps commits rolled out as canaries judged on real Prometheus metrics"
)]
struct Cli {
    /// Keep the cluster, Ramp, Prometheus and the demo app running after the story, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One demo-app process (the playground starts one per ReplicaSet).
    #[command(hide = true)]
    DemoApp {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        error_rate: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    ramp_e2e::install_crypto_provider();
    let cli = Cli::parse();
    if let Some(Command::DemoApp {
        listen,
        version,
        error_rate,
    }) = cli.command
    {
        return demo_app(&listen, version, error_rate).await;
    }

    let dir = tempfile::Builder::new()
        .prefix("ramp-playground-")
        .tempdir()
        .context("creating the playground's directory")?;
    let log = dir.path().join("playground.log");
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ramp_controller=info,ramp_analysis=info".into()),
        )
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .init();

    let terminal = std::io::stdout().is_terminal();
    let options = Options {
        keep_running: cli.keep_running,
        color: terminal,
        dir: dir.path().to_path_buf(),
    };
    let outcome = playground::run(options, interrupted()).await;
    Ok(match outcome {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(PlaygroundError::Interrupted) => {
            eprintln!("playground: interrupted; everything it started is stopped");
            std::process::ExitCode::from(130)
        }
        Err(error) => {
            eprintln!("playground: {error}");
            eprintln!("playground: logs were in {}", log.display());
            std::process::ExitCode::FAILURE
        }
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn demo_app(
    listen: &str,
    version: String,
    error_rate: f64,
) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&error_rate),
        "--error-rate must be between 0.0 and 1.0, got {error_rate}"
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let config = DemoAppConfig::new(&version, error_rate);
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, DemoState::new(&config), stop.clone()));
    interrupted().await;
    stop.cancel();
    let _ = server.await;
    Ok(std::process::ExitCode::SUCCESS)
}
