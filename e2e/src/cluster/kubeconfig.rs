//! Kubeconfig files for the cluster (admin, service-account tokens, the fault proxy) and
//! `kube::Client`s built from them.

use std::path::Path;

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::ClusterError;

/// Context (and cluster and user) name in every kubeconfig this crate writes.
pub const CONTEXT: &str = "ramp-test-cluster";

/// A kubeconfig with one cluster, one token user and one context. `ca_pem` is None for plain
/// `http://` servers (the fault proxy). `token` None writes a user without credentials.
pub fn kubeconfig_yaml(
    server: &str,
    ca_pem: Option<&str>,
    token: Option<&str>,
    namespace: Option<&str>,
) -> String {
    let ca = ca_pem
        .map(|pem| {
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    let user = token
        .map(|token| format!("\n    token: {token}"))
        .unwrap_or_else(|| " {}".to_string());
    let namespace = namespace
        .map(|ns| format!("\n    namespace: {ns}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}{ca}
users:
- name: {CONTEXT}
  user:{user}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}{namespace}
current-context: {CONTEXT}
"
    )
}

/// Writes `contents` to `path` so that readers never see a partial file (temp file + rename in
/// the same directory). Parent directories are created.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), ClusterError> {
    let io = |what: &'static str| {
        move |source| ClusterError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io("creating the kubeconfig's directory"))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents).map_err(io("writing a kubeconfig"))?;
    std::fs::rename(&tmp, path).map_err(io("moving a kubeconfig into place"))?;
    Ok(())
}

/// Reads a kubeconfig file into a kube client configuration (current context).
pub async fn config_from_file(path: &Path) -> Result<kube::Config, ClusterError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    config_from_kubeconfig(kubeconfig, path).await
}

/// Parses kubeconfig YAML into a kube client configuration (current context).
pub async fn config_from_yaml(yaml: &str, origin: &Path) -> Result<kube::Config, ClusterError> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|error| ClusterError::Kubeconfig {
        path: origin.to_path_buf(),
        message: error.to_string(),
    })?;
    config_from_kubeconfig(kubeconfig, origin).await
}

async fn config_from_kubeconfig(
    kubeconfig: Kubeconfig,
    origin: &Path,
) -> Result<kube::Config, ClusterError> {
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| ClusterError::Kubeconfig {
            path: origin.to_path_buf(),
            message: error.to_string(),
        })
}

/// A client for a configuration (installs the crypto provider first), built as Ramp builds
/// its own (`TCP_NODELAY` on), so the cluster's figures are the baseline for Ramp's.
pub fn client_for(config: kube::Config) -> Result<kube::Client, ClusterError> {
    crate::install_crypto_provider();
    ramp_controller::kube_client::client(&config).map_err(|source| ClusterError::Kube {
        what: "building a client".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_parses_with_and_without_credentials() {
        let yaml = kubeconfig_yaml(
            "https://127.0.0.1:6443",
            Some("-----BEGIN CERTIFICATE-----\n"),
            Some("abc"),
            Some("ns1"),
        );
        let parsed = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some(CONTEXT));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        let context = parsed.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("ns1"));

        let yaml = kubeconfig_yaml("http://127.0.0.1:1234", None, None, None);
        let parsed = Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:1234"));
        assert!(cluster.certificate_authority_data.is_none());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kubeconfig");
        write_atomically(&path, "one").unwrap();
        write_atomically(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
