//! What the plugin, chart and dashboard tests share: Ramp's binaries (built once per test
//! binary with the same cargo and profile as the tests) and running `kubectl-ramp` against
//! a test namespace.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// The path of one of `ramp-controller`'s binaries (`kubectl-ramp`, `ramp-controller`), built
/// on first use. Tests of the e2e package cannot name another package's binaries, so they are
/// built here, into the target directory these tests run from.
pub fn ramp_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build_binaries)
        .clone()
        .unwrap_or_else(|error| panic!("{error}"));
    dir.join(name)
}

fn build_binaries() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary location {}", exe.display()))?
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .ok_or("the test binary is not inside a target directory")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace above e2e/")?;
    let mut command = std::process::Command::new(env!("CARGO"));
    command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "ramp-controller",
            "--bin",
            "kubectl-ramp",
            "--bin",
            "ramp-controller",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p ramp-controller failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(profile_dir)
}

/// `kubectl-ramp` bound to a kubeconfig and a namespace.
pub struct Plugin {
    pub kubeconfig: PathBuf,
    pub namespace: String,
}

/// What one plugin run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Plugin {
    pub fn new(kubeconfig: &Path, namespace: &str) -> Plugin {
        Plugin {
            kubeconfig: kubeconfig.to_path_buf(),
            namespace: namespace.to_string(),
        }
    }

    /// A command with the kubeconfig and namespace set (as a user sets them: KUBECONFIG and -n).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(ramp_binary("kubectl-ramp"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("NO_COLOR")
            .args(args)
            .arg("-n")
            .arg(&self.namespace)
            .kill_on_drop(true);
        command
    }

    /// Runs the plugin to completion.
    pub async fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running kubectl-ramp {}: {e}", args.join(" ")));
        output.into()
    }

    /// Runs the plugin and insists on exit status 0; returns standard output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(
            run.code,
            Some(0),
            "kubectl ramp {} failed:\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }
}

/// A free loopback port (bound and released; the caller binds it again right away).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `ramp-controller` binary running `run` with loopback metrics and health addresses,
/// its output in a log file; killed on drop.
pub struct ControllerProcess {
    child: tokio::process::Child,
    pub metrics: std::net::SocketAddr,
    pub health: std::net::SocketAddr,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// `ramp-controller run ARGS… --metrics-addr … --health-addr …` with `KUBECONFIG`, logging
    /// to `log`.
    pub fn start(
        kubeconfig: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<ControllerProcess, String> {
        let metrics =
            std::net::SocketAddr::from(([127, 0, 0, 1], free_port().map_err(|e| e.to_string())?));
        let health =
            std::net::SocketAddr::from(([127, 0, 0, 1], free_port().map_err(|e| e.to_string())?));
        let file =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let errors = file.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(ramp_binary("ramp-controller"))
            .arg("run")
            .args(args)
            .arg(format!("--metrics-addr={metrics}"))
            .arg(format!("--health-addr={health}"))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                "info,ramp_controller=debug,ramp_analysis=debug,kube_runtime=warn,kube_client=warn",
            )
            .stdout(file)
            .stderr(errors)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting ramp-controller: {e}"))?;
        Ok(ControllerProcess {
            child,
            metrics,
            health,
            log: log.to_path_buf(),
        })
    }

    /// Waits until `/readyz` answers 200; fails early if the process exits.
    pub async fn ready(&mut self, timeout: std::time::Duration) -> Result<(), String> {
        let url = format!("http://{}/readyz", self.health);
        let http = ramp_e2e::fixtures::http::HttpClient::default();
        let began = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "ramp-controller exited ({status}):\n{}",
                    self.log_text()
                ));
            }
            if let Ok((200, _)) = http.get(&url, std::time::Duration::from_secs(2)).await {
                return Ok(());
            }
            if began.elapsed() > timeout {
                return Err(format!(
                    "ramp-controller was not ready after {timeout:?}:\n{}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The text of `/metrics`.
    pub async fn scrape(&self) -> Result<String, String> {
        let url = format!("http://{}/metrics", self.metrics);
        let (status, body) = ramp_e2e::fixtures::http::HttpClient::default()
            .get(&url, std::time::Duration::from_secs(5))
            .await?;
        if status != 200 {
            return Err(format!("GET {url} answered {status}"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `python3 e2e/scripts/SCRIPT ARGS…` and returns its standard output.
pub fn python(script: &str, args: &[&str]) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let output = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("running python3 {}: {e}", path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "python3 {} {} failed ({}):\n{}",
            path.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The repository root (the workspace).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Makes sure a Debian package's command exists, installing the package when running as root
/// (as `e2e/run-all-tests` does); otherwise says what to install.
pub fn ensure_command(command: &str, package: &str) -> Result<(), String> {
    let found = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found(command) {
        return Ok(());
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let installed = std::process::Command::new("sh")
            .args(["-c", &format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {package}")])
            .status()
            .is_ok_and(|s| s.success());
        if installed && found(command) {
            return Ok(());
        }
    }
    Err(format!(
        "`{command}` is missing: install the Debian package {package} (e2e/run-all-tests does)"
    ))
}
