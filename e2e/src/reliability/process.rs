//! `ramp-controller run` as a child process that can be killed with SIGKILL at any instruction,
//! as a node failure or the OOM killer would, and started again with nothing but the objects
//! in the cluster to resume from.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::fixtures::http::HttpClient;
use crate::fixtures::rollouts::wait_for;

/// Which build of `ramp-controller` to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `target/debug`: what the test suite already compiled, quick to link.
    Debug,
    /// `target/release`: what the benchmarks measure.
    Release,
}

/// Builds `ramp-controller` (a no-op when it is fresh) and returns the path of a private link
/// to the binary.
pub fn controller_binary(profile: Profile) -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut args = vec![
        "build",
        "--quiet",
        "-p",
        "ramp-controller",
        "--bin",
        "ramp-controller",
    ];
    if profile == Profile::Release {
        args.push("--release");
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(&workspace)
        .status()
        .map_err(|e| {
            format!(
                "running cargo {} in {}: {e}",
                args.join(" "),
                workspace.display()
            )
        })?;
    if !status.success() {
        return Err(format!("cargo {} failed ({status})", args.join(" ")));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let dir = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    // A link of this process's own: another build in the same target directory replaces
    // the file (a new inode), never the binary the trials restart.
    let built = target.join(dir).join("ramp-controller");
    let private_dir = target.join("reliability");
    std::fs::create_dir_all(&private_dir)
        .map_err(|e| format!("creating {}: {e}", private_dir.display()))?;
    let private = private_dir.join(format!("ramp-controller-{dir}-{}", std::process::id()));
    let _ = std::fs::remove_file(&private);
    std::fs::hard_link(&built, &private)
        .or_else(|_| std::fs::copy(&built, &private).map(|_| ()))
        .map_err(|e| format!("linking {} to {}: {e}", built.display(), private.display()))?;
    Ok(private)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("choosing a loopback port: {e}"))
}

/// How to start one controller process.
#[derive(Clone, Debug)]
pub struct ControllerCommand {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub namespace: String,
    /// Extra arguments after `run --namespace NS --metrics-addr … --health-addr …`.
    pub args: Vec<String>,
    /// Extra environment (e.g. `POD_NAME`, which names the leader-election identity).
    pub env: Vec<(String, String)>,
    /// stdout and stderr (the controller's logs) are appended here.
    pub log: PathBuf,
}

/// A running `ramp-controller run`; SIGKILLed when dropped.
pub struct ControllerProcess {
    child: Child,
    pub metrics_url: String,
    pub health_url: String,
    /// Where `/healthz`, `/readyz` and (with `--gitops`) `POST /api/webhook` listen.
    pub health_addr: std::net::SocketAddr,
    log: PathBuf,
}

impl ControllerProcess {
    /// Spawns the process; does not wait for it to be ready.
    pub fn spawn(command: &ControllerCommand) -> Result<Self, String> {
        let (metrics_port, health_port) = (free_port()?, free_port()?);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&command.log)
            .map_err(|e| format!("opening the controller log {}: {e}", command.log.display()))?;
        let mut process = Command::new(&command.binary);
        process
            .args([
                "run",
                "--namespace",
                &command.namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--health-addr",
                &format!("127.0.0.1:{health_port}"),
            ])
            .args(&command.args)
            .env("KUBECONFIG", &command.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RAMP_E2E_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(command.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // The controller logs to stdout (tracing's default); panics go to stderr.
            .stdout(Stdio::from(log.try_clone().map_err(|e| {
                format!("opening the controller log {}: {e}", command.log.display())
            })?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = process
            .spawn()
            .map_err(|e| format!("starting {}: {e}", command.binary.display()))?;
        Ok(ControllerProcess {
            child,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            health_url: format!("http://127.0.0.1:{health_port}"),
            health_addr: std::net::SocketAddr::from(([127, 0, 0, 1], health_port)),
            log: command.log.clone(),
        })
    }

    /// Spawns the process and waits until `/readyz` answers 200 (its caches are loaded).
    pub async fn start(command: &ControllerCommand, timeout: Duration) -> Result<Self, String> {
        let mut process = Self::spawn(command)?;
        process.ready(timeout).await?;
        Ok(process)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200; fails early if the process exits.
    pub async fn ready(&mut self, timeout: Duration) -> Result<(), String> {
        let url = format!("{}/readyz", self.health_url);
        let http = HttpClient::default();
        let began = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "ramp-controller exited ({status}) before it was ready; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            if let Ok((200, _)) = http.get(&url, Duration::from_secs(2)).await {
                return Ok(());
            }
            if began.elapsed() > timeout {
                return Err(format!(
                    "ramp-controller was not ready after {timeout:?}; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and wait until the kernel has reaped it: no cleanup, no graceful shutdown.
    pub async fn kill9(mut self) -> Result<(), String> {
        self.child
            .start_kill()
            .map_err(|e| format!("sending SIGKILL to ramp-controller: {e}"))?;
        self.child
            .wait()
            .await
            .map(|_| ())
            .map_err(|e| format!("waiting for the killed ramp-controller: {e}"))
    }

    /// Waits for the process to exit by itself (e.g. after losing its Lease).
    pub async fn exited(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| format!("ramp-controller still running after {timeout:?}"))?
            .map_err(|e| e.to_string())
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, String> {
        let (status, body) = HttpClient::default()
            .get(&self.metrics_url, Duration::from_secs(5))
            .await?;
        if status != 200 {
            return Err(format!("GET {} answered {status}", self.metrics_url));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Waits until `url` answers 200.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), String> {
    let http = HttpClient::default();
    wait_for(&format!("{url} to answer 200"), timeout, || async {
        matches!(http.get(url, Duration::from_secs(2)).await, Ok((200, _))).then_some(())
    })
    .await
}
