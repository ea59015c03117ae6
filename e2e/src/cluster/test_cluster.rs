//! [`TestCluster`]: starting, using and stopping one local control plane.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use super::binaries::KubeBinaries;
use super::kubeconfig::{self, kubeconfig_yaml, write_atomically};
use super::pki::{ClusterPki, random_token};
use super::process::{ManagedProcess, Reaper, log_tail};
use super::{ClusterError, ClusterOptions, etcd};
use crate::faults::{FaultProxy, FaultSpec};
use crate::kubelet::{Simulator, SimulatorOptions};

/// How long each start phase took (wall clock), for the benchmark and for `test-cluster up`.
#[derive(Clone, Debug, Default)]
pub struct StartTimings {
    /// Finding (or building) the binaries.
    pub binaries: Duration,
    /// Keys, certificates, token file, ports.
    pub prepare: Duration,
    /// From spawning etcd and kube-apiserver until `/readyz` answers ok.
    pub apiserver_ready: Duration,
    /// From spawning kube-controller-manager until its token controller has issued the
    /// `default` service account's token (its controllers run).
    pub controller_manager_ready: Duration,
    /// Until the simulated nodes are registered and Ready.
    pub simulator_ready: Duration,
    /// Everything, from the call to the returned cluster.
    pub total: Duration,
}

/// A running local cluster. Dropping it stops every process and removes its temporary data.
pub struct TestCluster {
    root: PathBuf,
    server: String,
    etcd_endpoint: String,
    ca_pem: String,
    admin_token: String,
    kubeconfig_path: PathBuf,
    client: kube::Client,
    processes: Vec<ManagedProcess>,
    reaper: Option<Reaper>,
    simulator: Option<Simulator>,
    fault_proxy: Option<FaultProxy>,
    timings: StartTimings,
    options: ClusterOptions,
    // Declared last: removed after the processes using it are gone.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("server", &self.server)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Identities in the API server's static token file.
struct Tokens {
    admin: String,
    controller_manager: String,
    simulator: String,
}

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(25);
const START_ATTEMPTS: usize = 3;

impl TestCluster {
    /// Starts etcd, kube-apiserver, kube-controller-manager and (unless disabled) the kubelet
    /// simulator; returns once the API server is ready, the controllers run and the nodes are
    /// Ready. Builds the binaries first if the cache is incomplete.
    pub async fn start(options: ClusterOptions) -> Result<Self, ClusterError> {
        crate::install_crypto_provider();
        let began = Instant::now();
        let binaries = if options.build_if_missing {
            KubeBinaries::ensure().await?
        } else {
            KubeBinaries::cached()?.ok_or_else(|| {
                ClusterError::Build(
                    "the Kubernetes binaries are not built; run `cargo run -p ramp-e2e --bin \
                     test-cluster -- build`"
                        .to_string(),
                )
            })?
        };
        let binaries_took = began.elapsed();
        let mut attempt = 1;
        loop {
            match Self::start_once(&options, &binaries, began, binaries_took).await {
                Err(error) if attempt < START_ATTEMPTS && is_port_clash(&error) => {
                    tracing::warn!(%error, attempt, "port taken between choosing and binding it; retrying");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(
        options: &ClusterOptions,
        binaries: &KubeBinaries,
        began: Instant,
        binaries_took: Duration,
    ) -> Result<Self, ClusterError> {
        let prepare_began = Instant::now();
        let (root, temp) = data_root(options.data_dir.as_deref())?;
        let mut reaper = Reaper::start(temp.as_ref().map(|t| t.path()))?;
        let logs = root.join("logs");
        let pki_dir = root.join("pki");
        for dir in [&logs, &pki_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
                what: "creating a cluster directory",
                path: dir.clone(),
                source,
            })?;
        }
        let (ca_pem, tokens) = credentials(&pki_dir)?;
        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = free_port()?;
        let etcd_endpoint = format!("http://127.0.0.1:{etcd_port}");
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let prepare = prepare_began.elapsed();

        let mut processes = Vec::new();
        let spawn_began = Instant::now();
        processes.push(ManagedProcess::spawn(
            "etcd",
            &binaries.etcd,
            &etcd_args(&root.join("etcd"), etcd_port, etcd_peer_port),
            &logs.join("etcd.log"),
            &mut reaper,
        )?);
        processes.push(ManagedProcess::spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &apiserver_args(&pki_dir, &etcd_endpoint, apiserver_port, options),
            &logs.join("kube-apiserver.log"),
            &mut reaper,
        )?);

        let admin_yaml = kubeconfig_yaml(&server, Some(&ca_pem), Some(&tokens.admin), None);
        let kubeconfig_path = root.join("kubeconfig");
        let config = kubeconfig::config_from_yaml(&admin_yaml, &kubeconfig_path).await?;
        let client = kubeconfig::client_for(config)?;

        let mut cluster = TestCluster {
            root: root.clone(),
            server: server.clone(),
            etcd_endpoint,
            ca_pem: ca_pem.clone(),
            admin_token: tokens.admin.clone(),
            kubeconfig_path: kubeconfig_path.clone(),
            client: client.clone(),
            processes,
            reaper: Some(reaper),
            simulator: None,
            fault_proxy: None,
            timings: StartTimings {
                binaries: binaries_took,
                prepare,
                ..StartTimings::default()
            },
            options: options.clone(),
            _temp: temp,
        };

        cluster.wait_apiserver_ready().await?;
        cluster.timings.apiserver_ready = spawn_began.elapsed();
        write_atomically(&kubeconfig_path, &admin_yaml)?;

        let kcm_kubeconfig = pki_dir.join("kube-controller-manager.kubeconfig");
        write_atomically(
            &kcm_kubeconfig,
            &kubeconfig_yaml(
                &server,
                Some(&ca_pem),
                Some(&tokens.controller_manager),
                None,
            ),
        )?;
        let kcm_began = Instant::now();
        let kcm = {
            let reaper = cluster
                .reaper
                .as_mut()
                .ok_or_else(|| ClusterError::Failed("cluster reaper missing".into()))?;
            ManagedProcess::spawn(
                "kube-controller-manager",
                &binaries.kube_controller_manager,
                &controller_manager_args(&pki_dir, &kcm_kubeconfig),
                &logs.join("kube-controller-manager.log"),
                reaper,
            )?
        };
        cluster.processes.push(kcm);

        let simulator = async {
            if !options.simulator {
                return Ok::<_, ClusterError>(None);
            }
            let began = Instant::now();
            let yaml = kubeconfig_yaml(&server, Some(&ca_pem), Some(&tokens.simulator), None);
            let config = kubeconfig::config_from_yaml(&yaml, &kubeconfig_path).await?;
            let client = kubeconfig::client_for(config)?;
            let simulator = Simulator::start(
                client,
                SimulatorOptions {
                    nodes: options.nodes.max(1),
                    pod_ready_after: options.pod_ready_after,
                    ..SimulatorOptions::default()
                },
            )
            .await?;
            Ok(Some((simulator, began.elapsed())))
        };
        let (kcm_ready, simulator) =
            tokio::join!(cluster.wait_controller_manager_ready(), simulator);
        kcm_ready?;
        cluster.timings.controller_manager_ready = kcm_began.elapsed();
        if let Some((simulator, took)) = simulator? {
            cluster.simulator = Some(simulator);
            cluster.timings.simulator_ready = took;
        }
        if let Some(spec) = &options.faults {
            let proxy = cluster.start_fault_proxy(spec.clone()).await?;
            cluster.fault_proxy = Some(proxy);
        }
        cluster.timings.total = began.elapsed();
        tracing::info!(server = %cluster.server, took = ?cluster.timings.total, "test cluster ready");
        Ok(cluster)
    }

    /// Fails with the process's log if one of the control-plane processes has exited.
    pub fn check_processes(&mut self) -> Result<(), ClusterError> {
        for process in &mut self.processes {
            if let Some(error) = process.exit_error() {
                return Err(error);
            }
        }
        Ok(())
    }

    async fn wait_apiserver_ready(&mut self) -> Result<(), ClusterError> {
        let began = Instant::now();
        loop {
            self.check_processes()?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| ClusterError::Failed(e.to_string()))?;
            let last_error = match self.client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(error) => error.to_string(),
            };
            if began.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready("kube-apiserver", began.elapsed(), last_error));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The token controller issuing the default service account's token proves the controller
    /// manager is connected and running its controllers.
    async fn wait_controller_manager_ready(&mut self) -> Result<(), ClusterError> {
        let began = Instant::now();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        let mut last_error = String::from("no token for the default service account yet");
        loop {
            // A crashed controller manager never issues the token: fail with its log at once.
            self.check_processes()?;
            match accounts.get_opt("default").await {
                Ok(Some(account)) if account.secrets.as_ref().is_some_and(|s| !s.is_empty()) => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(error) => last_error = error.to_string(),
            }
            if began.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready("kube-controller-manager", began.elapsed(), last_error));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn not_ready(
        &self,
        component: &'static str,
        waited: Duration,
        last_error: String,
    ) -> ClusterError {
        let log = self.root.join("logs").join(format!("{component}.log"));
        ClusterError::NotReady {
            component,
            waited,
            last_error,
            log_tail: log_tail(&log, 30),
            log,
        }
    }

    /// An admin client (user `ramp-admin` in `system:masters`), straight to the API server.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig, written once the API server was ready.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The cluster CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// etcd's client URL (`http://127.0.0.1:PORT`).
    pub fn etcd_endpoint(&self) -> &str {
        &self.etcd_endpoint
    }

    /// Name and process id of each control-plane process.
    pub fn process_ids(&self) -> Vec<(&'static str, u32)> {
        self.processes
            .iter()
            .filter_map(|p| Some((p.name, p.pid()?)))
            .collect()
    }

    /// The cluster's directory: `logs/`, `pki/`, `etcd/`, `kubeconfig`.
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// How long starting took, phase by phase.
    pub fn start_timings(&self) -> &StartTimings {
        &self.timings
    }

    /// The kubelet simulator, when running.
    pub fn simulator(&self) -> Option<&Simulator> {
        self.simulator.as_ref()
    }

    /// The fault proxy started by [`ClusterOptions::faults`].
    pub fn fault_proxy(&self) -> Option<&FaultProxy> {
        self.fault_proxy.as_ref()
    }

    /// Mints a token for a service account with the TokenRequest API (valid one hour).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, ClusterError> {
        super::shared::mint_service_account_token(&self.client, namespace, name).await
    }

    /// A client that authenticates with `token` (e.g. from [`Self::service_account_token`]).
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, ClusterError> {
        let yaml = kubeconfig_yaml(&self.server, Some(&self.ca_pem), Some(token), None);
        kubeconfig::client_for(kubeconfig::config_from_yaml(&yaml, &self.kubeconfig_path).await?)
    }

    /// Writes a kubeconfig for this cluster that authenticates with `token`.
    pub fn write_kubeconfig_with_token(
        &self,
        path: &Path,
        token: &str,
    ) -> Result<(), ClusterError> {
        write_atomically(
            path,
            &kubeconfig_yaml(&self.server, Some(&self.ca_pem), Some(token), None),
        )
    }

    /// Starts a new fault proxy in front of this cluster's API server. Its kubeconfig (admin
    /// token, plain http to the proxy) is at [`FaultProxy::kubeconfig_path`].
    pub async fn start_fault_proxy(&self, spec: FaultSpec) -> Result<FaultProxy, ClusterError> {
        let upstream = kubeconfig::config_from_file(&self.kubeconfig_path).await?;
        let proxy = FaultProxy::start(upstream, spec).await?;
        let path = self
            .root
            .join(format!("kubeconfig-faults-{}", proxy.port()));
        proxy.write_kubeconfig(&path, Some(&self.admin_token))?;
        Ok(proxy)
    }

    /// Compacts etcd's history up to now. With `watch_cache: false`, a watch or list from a
    /// resourceVersion before this point then fails with `410 Gone` (Expired). Returns the
    /// revision compacted to.
    pub async fn compact_etcd(&self) -> Result<i64, ClusterError> {
        etcd::compact(&self.etcd_endpoint).await
    }

    /// Stops everything now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut simulator) = self.simulator.take() {
            simulator.stop();
        }
        self.fault_proxy = None;
        let mut reaper = self.reaper.take();
        // Controllers first, then the API server, then its store.
        for process in self.processes.iter_mut().rev() {
            process.kill_and_wait(reaper.as_mut());
        }
        self.processes.clear();
        if let Some(reaper) = reaper {
            reaper.dismiss();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_port_clash(error: &ClusterError) -> bool {
    match error {
        ClusterError::Exited { log_tail, .. } | ClusterError::NotReady { log_tail, .. } => {
            log_tail.contains("address already in use")
        }
        _ => false,
    }
}

/// The cluster directory: the given persistent one, or a fresh temporary one on tmpfs when the
/// machine has it (etcd's fsyncs are then free), else in the system temp dir.
fn data_root(
    persistent: Option<&Path>,
) -> Result<(PathBuf, Option<tempfile::TempDir>), ClusterError> {
    if let Some(dir) = persistent {
        std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
            what: "creating the cluster data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let dir = dir.canonicalize().map_err(|source| ClusterError::Io {
            what: "resolving the cluster data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        return Ok((dir, None));
    }
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("ramp-cluster-");
        builder
    };
    let temp = builder
        .tempdir_in(shm)
        .or_else(|_| builder.tempdir())
        .map_err(|source| ClusterError::Io {
            what: "creating the cluster's temporary directory",
            path: std::env::temp_dir(),
            source,
        })?;
    Ok((temp.path().to_path_buf(), Some(temp)))
}

/// Writes (or, in a persistent data dir, reuses) the PKI files and the token file.
fn credentials(pki_dir: &Path) -> Result<(String, Tokens), ClusterError> {
    let token_file = pki_dir.join("tokens.csv");
    let ca_file = pki_dir.join("ca.crt");
    let files = [
        "ca.crt",
        "apiserver.crt",
        "apiserver.key",
        "service-account.key",
        "service-account.pub",
    ];
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ClusterError::Io {
            what: "reading cluster credentials",
            path: path.to_path_buf(),
            source,
        })
    };
    if token_file.is_file() && files.iter().all(|f| pki_dir.join(f).is_file()) {
        let tokens =
            parse_token_file(&read(&token_file)?).ok_or_else(|| ClusterError::Kubeconfig {
                path: token_file.clone(),
                message: "unreadable token file; delete the data directory's pki/ to regenerate"
                    .into(),
            })?;
        return Ok((read(&ca_file)?, tokens));
    }
    let pki = ClusterPki::generate().map_err(|e| ClusterError::Pki(e.to_string()))?;
    let token = || {
        random_token().map_err(|_| ClusterError::Pki("the system random generator failed".into()))
    };
    let tokens = Tokens {
        admin: token()?,
        controller_manager: token()?,
        simulator: token()?,
    };
    let contents = [
        &pki.ca_cert_pem,
        &pki.serving_cert_pem,
        &pki.serving_key_pem,
        &pki.service_account_key_pem,
        &pki.service_account_public_pem,
    ];
    for (file, contents) in files.iter().zip(contents) {
        write_atomically(&pki_dir.join(file), contents)?;
    }
    write_atomically(&token_file, &token_file_contents(&tokens))?;
    Ok((pki.ca_cert_pem, tokens))
}

const ADMIN_USER: &str = "ramp-admin";
const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
const SIMULATOR_USER: &str = "ramp-kubelet-simulator";

fn token_file_contents(tokens: &Tokens) -> String {
    format!(
        "{},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n{},{CONTROLLER_MANAGER_USER},{CONTROLLER_MANAGER_USER},\"system:masters\"\n{},{SIMULATOR_USER},{SIMULATOR_USER},\"system:masters\"\n",
        tokens.admin, tokens.controller_manager, tokens.simulator
    )
}

fn parse_token_file(text: &str) -> Option<Tokens> {
    let token_of = |user: &str| {
        text.lines()
            .find(|line| line.split(',').nth(1) == Some(user))
            .and_then(|line| line.split(',').next())
            .map(str::to_string)
    };
    Some(Tokens {
        admin: token_of(ADMIN_USER)?,
        controller_manager: token_of(CONTROLLER_MANAGER_USER)?,
        simulator: token_of(SIMULATOR_USER)?,
    })
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| ClusterError::Io {
        what: "finding a free loopback port",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| ClusterError::Io {
            what: "finding a free loopback port",
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}

fn path_arg(flag: &str, path: &Path) -> String {
    format!("--{flag}={}", path.display())
}

fn etcd_args(data: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=default".into(),
        path_arg("data-dir", data),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--logger=zap".into(),
        "--log-level=warn".into(),
        // Room for the 20,000-ReplicaSet benchmarks.
        "--quota-backend-bytes=8589934592".into(),
        "--experimental-backend-bbolt-freelist-type=map".into(),
    ]
}

/// The service-account issuer; also the default audience of minted tokens.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn apiserver_args(pki: &Path, etcd: &str, port: u16, options: &ClusterOptions) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers={etcd}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--insecure-port=0".into(),
        path_arg("tls-cert-file", &pki.join("apiserver.crt")),
        path_arg("tls-private-key-file", &pki.join("apiserver.key")),
        path_arg("token-auth-file", &pki.join("tokens.csv")),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        path_arg(
            "service-account-signing-key-file",
            &pki.join("service-account.key"),
        ),
        path_arg("service-account-key-file", &pki.join("service-account.pub")),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        format!("--watch-cache={}", options.watch_cache),
    ];
    args.extend(options.extra_apiserver_args.iter().cloned());
    args
}

/// Controllers run by kube-controller-manager: everything a workload or namespace needs, none
/// of the cloud, volume, certificate or autoscaling ones.
pub const CONTROLLERS: &str = "deployment,replicaset,replicationcontroller,statefulset,daemonset,job,\
garbagecollector,namespace,endpoint,serviceaccount,serviceaccount-token,nodelifecycle,disruption,\
resourcequota,podgc,clusterrole-aggregation,root-ca-cert-publisher";

fn controller_manager_args(pki: &Path, kubeconfig: &Path) -> Vec<String> {
    vec![
        path_arg("kubeconfig", kubeconfig),
        "--leader-elect=false".into(),
        "--port=0".into(),
        "--secure-port=0".into(),
        path_arg(
            "service-account-private-key-file",
            &pki.join("service-account.key"),
        ),
        path_arg("root-ca-file", &pki.join("ca.crt")),
        format!("--controllers={CONTROLLERS}"),
        "--use-service-account-credentials=false".into(),
        "--kube-api-qps=1000".into(),
        "--kube-api-burst=2000".into(),
        "--profiling=false".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_round_trips() {
        let tokens = Tokens {
            admin: "a1".into(),
            controller_manager: "c2".into(),
            simulator: "s3".into(),
        };
        let parsed = parse_token_file(&token_file_contents(&tokens)).unwrap();
        assert_eq!(
            (
                parsed.admin.as_str(),
                parsed.controller_manager.as_str(),
                parsed.simulator.as_str()
            ),
            ("a1", "c2", "s3")
        );
        assert!(
            token_file_contents(&tokens).contains("a1,ramp-admin,ramp-admin,\"system:masters\"")
        );
    }

    #[test]
    fn watch_cache_flag_follows_options() {
        let options = ClusterOptions {
            watch_cache: false,
            ..ClusterOptions::default()
        };
        let args = apiserver_args(Path::new("/p"), "http://127.0.0.1:1", 6443, &options);
        assert!(args.contains(&"--watch-cache=false".to_string()));
        assert!(args.contains(&"--authorization-mode=Node,RBAC".to_string()));
    }

    #[test]
    fn port_clashes_are_recognised() {
        let error = ClusterError::Exited {
            component: "etcd",
            status: "exit status: 1".into(),
            log: PathBuf::from("/x"),
            log_tail: "listen tcp 127.0.0.1:2380: bind: address already in use".into(),
        };
        assert!(is_port_clash(&error));
    }
}
