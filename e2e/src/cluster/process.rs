//! Child processes of a cluster, and the guarantee that none outlives the process that started
//! it.
//!
//! Three layers, because tests end in every way there is:
//! - normal drop: [`ManagedProcess::kill_and_wait`] kills and reaps each child before the data
//!   directory is removed;
//! - the owning runtime goes away (a test's runtime shuts down, a task is aborted): every child
//!   is spawned with `kill_on_drop`;
//! - the whole test process dies (panic with `panic = abort`, SIGKILL, a timeout in CI): a small
//!   [`Reaper`] shell process, in its own process group, holds a pipe from us. When the pipe
//!   closes without the word `done` it kills every child it was told about and removes the data
//!   directory. No unsafe code (`prctl(PR_SET_PDEATHSIG)` would need `pre_exec`), and it works
//!   whichever thread spawned the children.
//!
//! Children get their own process group, so a Ctrl-C in the terminal reaches only the parent,
//! which then stops them in order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

const REAPER_SCRIPT: &str = r#"
pids=
while IFS= read -r line; do
    case "$line" in
        done) exit 0 ;;
        +*) pids="$pids ${line#+}" ;;
        -*) p=${line#-}; kept=; for q in $pids; do [ "$q" = "$p" ] || kept="$kept $q"; done; pids=$kept ;;
    esac
done
[ -n "$pids" ] && kill -9 $pids 2>/dev/null
[ -n "$1" ] && rm -rf -- "$1"
exit 0
"#;

/// Kills the registered children and removes a directory if this process dies without
/// dismissing it first. See the module docs.
pub struct Reaper {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Reaper {
    /// Starts the reaper. `remove_dir` is deleted when it fires (None for persistent data).
    pub fn start(remove_dir: Option<&Path>) -> Result<Self, ClusterError> {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("ramp-cluster-reaper")
            .arg(
                remove_dir
                    .map(|p| p.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                program: "sh (cluster reaper)".into(),
                source,
            })?;
        let stdin = child.stdin.take();
        Ok(Reaper { child, stdin })
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A failed write means the reaper is gone; nothing better to do than carry on, the
            // children still have kill_on_drop.
            if stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
            {
                tracing::warn!("cluster reaper is gone; children are only killed on drop");
            }
        }
    }

    /// Registers a child to kill if this process dies.
    pub fn watch(&mut self, pid: u32) {
        self.send(&format!("+{pid}\n"));
    }

    /// Unregisters a child that was stopped and reaped normally.
    pub fn forget(&mut self, pid: u32) {
        self.send(&format!("-{pid}\n"));
    }

    /// Tells the reaper everything was cleaned up normally and lets it exit.
    pub fn dismiss(mut self) {
        self.send("done\n");
        self.stdin = None;
        wait_briefly(
            || self.child.try_wait().ok().flatten().is_some(),
            Duration::from_secs(1),
        );
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing stdin without "done" fires the reaper: that is the intended behaviour when a
        // cluster is dropped half-built. After `dismiss` stdin is already None.
        self.stdin = None;
        let _ = self.child.try_wait();
    }
}

/// One control-plane process with its log file.
pub struct ManagedProcess {
    pub name: &'static str,
    child: tokio::process::Child,
    pid: Option<u32>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Spawns `program args…` with stdout and stderr appended to `log`, in its own process
    /// group, registered with the reaper.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
        reaper: &mut Reaper,
    ) -> Result<Self, ClusterError> {
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| ClusterError::Io {
                    what: "opening a log file",
                    path: log.to_path_buf(),
                    source,
                })
        };
        let stdout = open_log()?;
        let stderr = open_log()?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let pid = child.id();
        if let Some(pid) = pid {
            reaper.watch(pid);
        }
        Ok(ManagedProcess {
            name,
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The error to report when this process ended on its own.
    pub fn exit_error(&mut self) -> Option<ClusterError> {
        let status = self.exited()?;
        Some(ClusterError::Exited {
            component: self.name,
            status: status.to_string(),
            log: self.log.clone(),
            log_tail: log_tail(&self.log, 30),
        })
    }

    /// Sends SIGKILL and reaps the process (blocking for at most a few seconds; usable in Drop).
    pub fn kill_and_wait(&mut self, reaper: Option<&mut Reaper>) {
        if self.exited().is_none() {
            let _ = self.child.start_kill();
            let child = &mut self.child;
            wait_briefly(
                || child.try_wait().ok().flatten().is_some(),
                Duration::from_secs(5),
            );
        }
        if let (Some(reaper), Some(pid)) = (reaper, self.pid) {
            reaper.forget(pid);
        }
    }
}

fn wait_briefly(mut done: impl FnMut() -> bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
