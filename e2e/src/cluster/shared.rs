//! One cluster for many tests: [`for_test`] and [`TestEnv`].
//!
//! - `RAMP_E2E_KUBECONFIG=PATH` set: every test uses the cluster PATH points at (the project's
//!   test command starts one `test-cluster up --kubeconfig PATH`; any other cluster works too).
//! - unset: the first `for_test()` in a test binary starts a private [`TestCluster`] on a thread
//!   of its own (so it outlives each test's runtime); it lives until the binary exits, when its
//!   reaper stops it and removes its data.
//!
//! Every [`TestEnv`] has a fresh namespace (labelled `ramp.e2e/test=true`), created with its
//! `default` service account ready for pods, and deleted when the env is dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::OnceCell;

use super::kubeconfig::{self, kubeconfig_yaml, write_atomically};
use super::{ClusterError, ClusterOptions, KubeBinaries, TestCluster, kube_error};
use crate::kubelet::SIMULATED_NODE_LABEL;

/// The environment variable naming an existing cluster's kubeconfig for all e2e tests.
pub const EXTERNAL_KUBECONFIG_ENV: &str = "RAMP_E2E_KUBECONFIG";

/// The kubeconfig named by `RAMP_E2E_KUBECONFIG`, if set and non-empty.
pub fn external_kubeconfig() -> Option<PathBuf> {
    std::env::var_os(EXTERNAL_KUBECONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A test's view of the cluster: an admin client, the kubeconfig, a fresh namespace.
pub struct TestEnv {
    client: kube::Client,
    kubeconfig: PathBuf,
    namespace: String,
    external: bool,
    scratch: tempfile::TempDir,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("kubeconfig", &self.kubeconfig)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A client and a fresh namespace on the shared cluster, see the module docs.
pub async fn for_test() -> Result<TestEnv, ClusterError> {
    crate::install_crypto_provider();
    let (kubeconfig, external) = match external_kubeconfig() {
        Some(path) => (path, true),
        None => (process_cluster().await?, false),
    };
    let config = kubeconfig::config_from_file(&kubeconfig).await?;
    let client = kubeconfig::client_for(config)?;
    let namespace = create_test_namespace(&client).await?;
    crate::fixtures::rbac::register_namespace(&namespace, &kubeconfig);
    let scratch = tempfile::Builder::new()
        .prefix("ramp-e2e-test-")
        .tempdir()
        .map_err(|source| ClusterError::Io {
            what: "creating a test scratch directory",
            path: std::env::temp_dir(),
            source,
        })?;
    Ok(TestEnv {
        client,
        kubeconfig,
        namespace,
        external,
        scratch,
    })
}

/// A private cluster for a test that needs what only a local cluster offers (etcd compaction,
/// watch cache off, its own fault proxy in front of everything). Returns None, after printing
/// why, when the tests run against an external cluster on a machine without the binaries built.
pub async fn private_cluster(options: ClusterOptions) -> Result<Option<TestCluster>, ClusterError> {
    if external_kubeconfig().is_some() && KubeBinaries::cached()?.is_none() {
        eprintln!(
            "skipping {}: it needs a private local cluster and the Kubernetes binaries are not \
             built here (run `cargo run -p ramp-e2e --bin test-cluster -- build`)",
            current_test_name()
        );
        return Ok(None);
    }
    TestCluster::start(options).await.map(Some)
}

static PROCESS_CLUSTER: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The kubeconfig of this process's private cluster, starting it on first use.
async fn process_cluster() -> Result<PathBuf, ClusterError> {
    let result = PROCESS_CLUSTER
        .get_or_init(|| async {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("ramp-e2e-cluster".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = sender
                                .send(Err(format!("starting the cluster's runtime: {error}")));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match TestCluster::start(ClusterOptions::default()).await {
                            Ok(cluster) => {
                                let _ = sender.send(Ok(cluster.kubeconfig_path().to_path_buf()));
                                // Lives until the process exits; the reaper then cleans up.
                                std::future::pending::<()>().await;
                                drop(cluster);
                            }
                            Err(error) => {
                                let _ = sender.send(Err(error.to_string()));
                            }
                        }
                    });
                });
            if let Err(error) = spawned {
                return Err(format!("starting the cluster thread: {error}"));
            }
            receiver
                .await
                .unwrap_or_else(|_| Err("the cluster thread ended without an answer".into()))
        })
        .await;
    result.clone().map_err(|message| {
        ClusterError::Failed(format!(
            "the test binary's private cluster failed to start: {message}"
        ))
    })
}

/// The libtest thread name (the test's path) or "a test".
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("a test")
        .to_string()
}

/// `e2e-<test name>-<random>`, a valid DNS label of at most 63 characters.
pub(crate) fn namespace_name(test_name: &str, suffix: &str) -> String {
    let base = test_name.rsplit("::").next().unwrap_or(test_name);
    let mut cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    cleaned.truncate(63 - "e2e-".len() - 1 - suffix.len());
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() {
        format!("e2e-{suffix}")
    } else {
        format!("e2e-{cleaned}-{suffix}")
    }
}

async fn create_test_namespace(client: &kube::Client) -> Result<String, ClusterError> {
    let suffix: String = (0..5)
        .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
        .collect();
    let name = namespace_name(&current_test_name(), &suffix);
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "ramp.e2e/test": "true" } }
    }))
    .map_err(|e| ClusterError::Failed(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(kube_error(format!("creating test namespace {name}")))?;
    wait_for_default_service_account(client, &name).await?;
    Ok(name)
}

/// Pods are refused until the namespace's `default` service account exists and, before
/// Kubernetes 1.24, until its token secret does too.
async fn wait_for_default_service_account(
    client: &kube::Client,
    namespace: &str,
) -> Result<(), ClusterError> {
    let needs_secret = client
        .apiserver_version()
        .await
        .map(|info| {
            info.minor
                .trim_end_matches('+')
                .parse::<u32>()
                .map(|m| m < 24)
                .unwrap_or(false)
        })
        .unwrap_or(false);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    loop {
        let account = accounts
            .get_opt("default")
            .await
            .map_err(kube_error(format!(
                "reading service account {namespace}/default"
            )))?;
        if let Some(account) = account
            && (!needs_secret || account.secrets.as_ref().is_some_and(|s| !s.is_empty()))
        {
            return Ok(());
        }
        if began.elapsed() > Duration::from_secs(60) {
            return Err(ClusterError::Failed(format!(
                "service account {namespace}/default was not ready after 60s: is \
                 kube-controller-manager running its serviceaccount and token controllers?"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 50 ms until it returns `Ok(true)`; fails after `timeout` naming `what`
/// and the last error `check` returned, if any.
pub async fn eventually<F, Fut, E>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let began = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last_error = Some(error.to_string()),
        }
        if began.elapsed() > timeout {
            return Err(ClusterError::Failed(match last_error {
                Some(error) => {
                    format!("timed out after {timeout:?} waiting for {what}; last error: {error}")
                }
                None => format!("timed out after {timeout:?} waiting for {what}"),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mints a token for `namespace/name` with the TokenRequest API, valid for one hour.
pub(crate) async fn mint_service_account_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, ClusterError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .map_err(kube_error(format!(
            "minting a token for service account {namespace}/{name} (does it exist?)"
        )))?;
    answer
        .status
        .map(|status| status.token)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ClusterError::Failed(format!(
                "TokenRequest for {namespace}/{name} returned no token"
            ))
        })
}

impl TestEnv {
    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The test's namespace (created for it, deleted on drop).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The admin kubeconfig of the cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// True when the cluster comes from `RAMP_E2E_KUBECONFIG` rather than this process.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// A directory for the test's files, removed on drop.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// True when the cluster's pods are run by Ramp's kubelet simulator (so its conventions,
    /// `-unready` images, `ramp.e2e/*` annotations, hold).
    pub async fn is_simulated(&self) -> Result<bool, ClusterError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list_metadata(
                &ListParams::default()
                    .labels(&format!("{SIMULATED_NODE_LABEL}=true"))
                    .limit(1),
            )
            .await
            .map_err(kube_error("listing simulated nodes"))?;
        Ok(!nodes.items.is_empty())
    }

    /// `kubectl --kubeconfig … --namespace <test namespace>`, ready for more arguments.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--namespace")
            .arg(&self.namespace)
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl with `args` (plus kubeconfig and namespace) and returns its stdout; an error
    /// carries the command line and stderr.
    pub async fn run_kubectl(&self, args: &[&str]) -> Result<String, ClusterError> {
        let output =
            self.kubectl()
                .args(args)
                .output()
                .await
                .map_err(|source| ClusterError::Spawn {
                    program: "kubectl".into(),
                    source,
                })?;
        if !output.status.success() {
            return Err(ClusterError::Failed(format!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl apply -f -` with `yaml` on stdin, in the test namespace; returns kubectl's stdout.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<String, ClusterError> {
        self.kubectl_with_stdin(&["apply", "-f", "-"], yaml).await
    }

    /// Runs kubectl with `args` and `stdin`; an error carries the command line and stderr.
    pub async fn kubectl_with_stdin(
        &self,
        args: &[&str],
        stdin: &str,
    ) -> Result<String, ClusterError> {
        use tokio::io::AsyncWriteExt as _;
        let spawn_error = |source| ClusterError::Spawn {
            program: "kubectl".into(),
            source,
        };
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .await
                .map_err(spawn_error)?;
        }
        let output = child.wait_with_output().await.map_err(spawn_error)?;
        if !output.status.success() {
            return Err(ClusterError::Failed(format!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Mints a token for a service account in the test namespace (TokenRequest API, one hour).
    pub async fn service_account_token(&self, name: &str) -> Result<String, ClusterError> {
        mint_service_account_token(&self.client, &self.namespace, name).await
    }

    /// Writes a kubeconfig for the same cluster that authenticates with `token` instead; returns
    /// its path (inside [`Self::scratch_dir`]).
    pub async fn kubeconfig_with_token(&self, token: &str) -> Result<PathBuf, ClusterError> {
        let config = kubeconfig::config_from_file(&self.kubeconfig).await?;
        let ca_pem = config
            .root_cert
            .as_ref()
            .and_then(|certs| certs.first())
            .map(|der| der_to_pem(der));
        let yaml = kubeconfig_yaml(
            &config.cluster_url.to_string(),
            ca_pem.as_deref(),
            Some(token),
            Some(&self.namespace),
        );
        let path = self
            .scratch
            .path()
            .join(format!("kubeconfig-token-{}", fastrand::u32(..)));
        write_atomically(&path, &yaml)?;
        Ok(path)
    }

    /// A client that authenticates with `token`.
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, ClusterError> {
        let path = self.kubeconfig_with_token(token).await?;
        kubeconfig::client_for(kubeconfig::config_from_file(&path).await?)
    }
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Best effort, and independent of the test's runtime (which may be shutting down): a
        // short-lived thread with its own runtime asks for the deletion without waiting for it.
        let kubeconfig = self.kubeconfig.clone();
        let namespace = std::mem::take(&mut self.namespace);
        crate::fixtures::rbac::forget_namespace(&namespace);
        let deletion = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(config) = kubeconfig::config_from_file(&kubeconfig).await else {
                    return;
                };
                let Ok(client) = kubeconfig::client_for(config) else {
                    return;
                };
                if let Err(error) = Api::<Namespace>::all(client)
                    .delete(&namespace, &DeleteParams::background())
                    .await
                {
                    eprintln!("could not delete test namespace {namespace}: {error}");
                }
            });
        });
        let _ = deletion.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        assert_eq!(
            namespace_name("cluster::deployment_becomes_available", "ab12c"),
            "e2e-deployment-becomes-available-ab12c"
        );
        let long = namespace_name(&"x".repeat(200), "ab12c");
        assert!(long.len() <= 63, "{long}");
        assert_eq!(namespace_name("a test", "zz"), "e2e-a-test-zz");
        assert_eq!(namespace_name("__", "zz"), "e2e-zz");
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let pem = der_to_pem(&[0u8; 100]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(
            pem.lines()
                .all(|line| line.len() <= 64 || line.starts_with("-----"))
        );
    }
}
