//! Where the control-plane binaries live and how they get there.
//!
//! `scripts/build-kube.sh` (embedded in this crate, so it runs from any working directory)
//! installs Debian's `golang-1.19-go`, `etcd-server` and `dpkg-dev`, fetches the source package
//! `kubernetes` 1.20.2, patches it for Go 1.19 (reflect2, the OpenAPI null check) and builds `kube-apiserver` and
//! `kube-controller-manager` into `CACHE/kube-1.20.2/bin/`. Every stage leaves a marker, so an
//! interrupted build resumes and a finished one returns at once. `CACHE` is `$RAMP_CACHE_DIR`,
//! else `$XDG_CACHE_HOME/ramp`, else `~/.cache/ramp`.

use std::path::{Path, PathBuf};

use super::ClusterError;

/// The Kubernetes version built and served.
pub const KUBE_VERSION: &str = "1.20.2";

const BUILD_SCRIPT: &str = include_str!("../../scripts/build-kube.sh");

/// The build script's `patch_level`, written into `bin/.complete`: a cache built before the
/// last patch is rebuilt (only the stages that changed).
const PATCH_LEVEL: &str = "2";

/// Paths of the three control-plane binaries.
#[derive(Clone, Debug)]
pub struct KubeBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
}

/// `CACHE/kube-1.20.2`, see the module docs.
pub fn cache_dir() -> Result<PathBuf, ClusterError> {
    let base = if let Some(dir) = std::env::var_os("RAMP_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("ramp")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache").join("ramp")
    } else {
        return Err(ClusterError::Build(
            "cannot find a cache directory: set RAMP_CACHE_DIR or HOME".to_string(),
        ));
    };
    Ok(base.join(format!("kube-{KUBE_VERSION}")))
}

impl KubeBinaries {
    fn in_dir(bin: &Path) -> Self {
        KubeBinaries {
            etcd: bin.join("etcd"),
            kube_apiserver: bin.join("kube-apiserver"),
            kube_controller_manager: bin.join("kube-controller-manager"),
        }
    }

    /// The cached binaries if a previous build finished, without building anything.
    pub fn cached() -> Result<Option<Self>, ClusterError> {
        let bin = cache_dir()?.join("bin");
        let binaries = Self::in_dir(&bin);
        let level = std::fs::read_to_string(bin.join(".complete")).unwrap_or_default();
        let complete = level.trim() == PATCH_LEVEL
            && [
                &binaries.etcd,
                &binaries.kube_apiserver,
                &binaries.kube_controller_manager,
            ]
            .iter()
            .all(|path| path.is_file());
        Ok(complete.then_some(binaries))
    }

    /// The cached binaries, building them first if the cache is incomplete (10-20 minutes the
    /// first time; progress goes to stderr).
    pub async fn ensure() -> Result<Self, ClusterError> {
        if let Some(binaries) = Self::cached()? {
            return Ok(binaries);
        }
        build().await?;
        Self::cached()?.ok_or_else(|| {
            ClusterError::Build(
                "build-kube.sh finished but the cache is still incomplete; see its output above"
                    .to_string(),
            )
        })
    }
}

/// Runs the embedded build script against the cache directory, streaming its progress to
/// stderr. Idempotent and safe to run from several processes at once (the script takes a lock).
pub async fn build() -> Result<(), ClusterError> {
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache).map_err(|source| ClusterError::Io {
        what: "creating the cache directory",
        path: cache.clone(),
        source,
    })?;
    let script = cache.join("build-kube.sh");
    std::fs::write(&script, BUILD_SCRIPT).map_err(|source| ClusterError::Io {
        what: "writing the build script",
        path: script.clone(),
        source,
    })?;
    eprintln!(
        "[test-cluster build] building Kubernetes {KUBE_VERSION} into {} (first time only)",
        cache.display()
    );
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(&cache)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .await
        .map_err(|source| ClusterError::Spawn {
            program: "bash".to_string(),
            source,
        })?;
    if !status.success() {
        return Err(ClusterError::Build(format!(
            "{} {} failed ({status}); its output above says which stage. Fix the cause and run \
             `cargo run -p ramp-e2e --bin test-cluster -- build` again: finished stages are kept",
            script.display(),
            cache.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_level_is_the_build_scripts() {
        assert!(
            BUILD_SCRIPT.contains(&format!("\npatch_level={PATCH_LEVEL}\n")),
            "PATCH_LEVEL and build-kube.sh's patch_level differ"
        );
    }
}
