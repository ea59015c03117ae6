//! The test cluster does what Kubernetes does, checked with the real `kubectl`: it starts; Ramp's
//! CRDs install and become Established; a Deployment becomes Available with ready pods;
//! deleting it garbage-collects its ReplicaSet and pods; Jobs end by their command; an
//! `-unready` pod never becomes Ready; deleting a namespace removes its contents; a
//! service-account token is refused what its Role does not allow.
//!
//! Runs against `RAMP_E2E_KUBECONFIG` when set (each test in its own namespace), else against a
//! private cluster shared by this file's tests. kubectl 1.27+ warns about the version skew with
//! the 1.20 server; that is expected.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::Api;
use kube::api::ListParams;
use ramp_e2e::cluster::{ClusterError, TestEnv, eventually, for_test};

async fn env() -> TestEnv {
    for_test().await.expect("a test cluster")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#;

#[tokio::test]
async fn cluster_starts_and_answers_kubectl() {
    let env = env().await;
    let version = env.run_kubectl(&["version", "-o", "json"]).await.unwrap();
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(server.starts_with("v1."), "server version {server:?}");
    if !env.is_external() {
        assert_eq!(server, "v1.20.2");
    }
    assert_eq!(
        env.run_kubectl(&["get", "--raw", "/readyz"])
            .await
            .unwrap()
            .trim(),
        "ok"
    );
    let nodes = env
        .run_kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .await
        .unwrap();
    assert!(
        nodes.split_whitespace().any(|s| s == "True"),
        "no Ready node: {nodes:?}"
    );
    // The test's namespace exists and is usable.
    env.run_kubectl(&["create", "configmap", "hello", "--from-literal=a=b"])
        .await
        .unwrap();
    assert_eq!(
        env.run_kubectl(&["get", "configmap", "hello", "-o", "jsonpath={.data.a}"])
            .await
            .unwrap(),
        "b"
    );
}

fn crd_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn ramp_crds_install_and_become_established() {
    let env = env().await;
    let files = crd_files();
    assert!(
        !files.is_empty(),
        "crds/ holds no *.yaml: the CRDs must be generated into crds/ (ramp-controller crd)"
    );
    let mut names = Vec::new();
    for file in &files {
        // Server-side apply: these CRDs are larger than the last-applied annotation allows.
        let path = file.to_string_lossy();
        let applied = env
            .run_kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &path,
                "-o",
                "name",
            ])
            .await
            .unwrap_or_else(|e| panic!("{path} does not install on this API server: {e}"));
        names.extend(applied.lines().map(str::to_string));
    }
    assert!(
        names.len() >= files.len(),
        "applied {names:?} from {files:?}"
    );
    for name in &names {
        assert!(
            name.starts_with("customresourcedefinition"),
            "{name} is not a CRD"
        );
        env.run_kubectl(&["wait", "--for=condition=Established", "--timeout=30s", name])
            .await
            .unwrap();
    }
    // The kinds are served: listing a Rollout works in the test namespace.
    let rollouts = env
        .run_kubectl(&["get", "rollouts.argoproj.io", "-o", "name"])
        .await
        .unwrap();
    assert_eq!(rollouts.trim(), "");
}

#[tokio::test]
async fn deployment_becomes_available_with_ready_pods_and_endpoints() {
    let env = env().await;
    env.apply_yaml(WEB).await.unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Available",
        "--timeout=60s",
        "deployment/web",
    ])
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    assert!(list.items.iter().all(pod_ready));
    let mut ips: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "pod IPs must be set and unique");
    // kube-controller-manager's endpoints controller follows the pods' readiness.
    let endpoints: Api<Endpoints> = Api::namespaced(env.client(), env.namespace());
    eventually(
        "3 ready endpoint addresses for service web",
        Duration::from_secs(30),
        || async {
            let current = endpoints.get_opt("web").await?;
            let ready = current
                .and_then(|e| e.subsets)
                .map(|subsets| {
                    subsets
                        .iter()
                        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
                })
                .unwrap_or(0);
            Ok::<_, kube::Error>(ready == 3)
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn deleting_a_deployment_garbage_collects_its_replicaset_and_pods() {
    let env = env().await;
    env.apply_yaml(WEB).await.unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Available",
        "--timeout=60s",
        "deployment/web",
    ])
    .await
    .unwrap();
    let before = env
        .run_kubectl(&["get", "replicasets,pods", "-l", "app=web", "-o", "name"])
        .await
        .unwrap();
    assert_eq!(
        before.lines().count(),
        4,
        "one ReplicaSet and three pods: {before}"
    );
    env.run_kubectl(&["delete", "deployment", "web", "--wait=false"])
        .await
        .unwrap();
    eventually(
        "the ReplicaSet and pods of web to be gone",
        Duration::from_secs(60),
        || async {
            let left = env
                .run_kubectl(&["get", "replicasets,pods", "-l", "app=web", "-o", "name"])
                .await?;
            Ok::<_, ClusterError>(left.trim().is_empty())
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn jobs_complete_or_fail_by_their_command() {
    let env = env().await;
    let job = |name: &str, script: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sh, -c, '{script}']\n"
        )
    };
    env.apply_yaml(&format!(
        "{}---\n{}",
        job("succeeds", "sleep 1; exit 0"),
        job("fails", "exit 1")
    ))
    .await
    .unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Complete",
        "--timeout=60s",
        "job/succeeds",
    ])
    .await
    .unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Failed",
        "--timeout=60s",
        "job/fails",
    ])
    .await
    .unwrap();
    let phases = env
        .run_kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=fails",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .await
        .unwrap();
    assert_eq!(phases.trim(), "Failed");
    let succeeded = env
        .run_kubectl(&[
            "get",
            "job",
            "succeeds",
            "-o",
            "jsonpath={.status.succeeded}",
        ])
        .await
        .unwrap();
    assert_eq!(succeeded, "1");
}

#[tokio::test]
async fn unready_image_never_becomes_ready() {
    let env = env().await;
    if !env.is_simulated().await.unwrap() {
        eprintln!("skipping: `-unready` images are a convention of Ramp's kubelet simulator");
        return;
    }
    env.run_kubectl(&["run", "never", "--image=demo:1.0-unready"])
        .await
        .unwrap();
    env.run_kubectl(&["run", "control", "--image=demo:1.0"])
        .await
        .unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=30s",
        "pod/control",
    ])
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    eventually(
        "pod never to be Running",
        Duration::from_secs(30),
        || async {
            let pod = pods.get("never").await?;
            Ok::<_, kube::Error>(pod.status.and_then(|s| s.phase).as_deref() == Some("Running"))
        },
    )
    .await
    .unwrap();
    // Give it well over the ready delay, then look again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = pods.get("never").await.unwrap();
    assert!(
        !pod_ready(&pod),
        "an -unready pod became Ready: {:?}",
        pod.status
    );
    let container = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert!(!container.ready && container.state.as_ref().unwrap().running.is_some());
}

/// kubectl in another namespace than the env's (the later `--namespace` wins).
async fn kubectl_in(env: &TestEnv, namespace: &str, args: &[&str]) -> Result<String, ClusterError> {
    let mut all = vec!["--namespace", namespace];
    all.extend_from_slice(args);
    env.run_kubectl(&all).await
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents() {
    let env = env().await;
    // A namespace of its own (the env's is deleted on drop anyway; this one is watched going).
    let namespace = format!("{}-doomed", env.namespace());
    env.run_kubectl(&["create", "namespace", &namespace])
        .await
        .unwrap();
    // Pods are admitted once the namespace's default service account (and its token) exists.
    eventually(
        "the default service account of the new namespace",
        Duration::from_secs(30),
        || async {
            let secret = kubectl_in(
                &env,
                &namespace,
                &[
                    "get",
                    "serviceaccount",
                    "default",
                    "-o",
                    "jsonpath={.secrets[0].name}",
                ],
            )
            .await?;
            Ok::<_, ClusterError>(!secret.trim().is_empty() || env.is_external())
        },
    )
    .await
    .unwrap();
    kubectl_in(
        &env,
        &namespace,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=2",
        ],
    )
    .await
    .unwrap();
    kubectl_in(
        &env,
        &namespace,
        &["create", "configmap", "settings", "--from-literal=a=b"],
    )
    .await
    .unwrap();
    kubectl_in(
        &env,
        &namespace,
        &[
            "wait",
            "--for=condition=Available",
            "--timeout=60s",
            "deployment/web",
        ],
    )
    .await
    .unwrap();
    env.run_kubectl(&["delete", "namespace", &namespace, "--wait=false"])
        .await
        .unwrap();
    eventually(
        "the namespace to be gone",
        Duration::from_secs(90),
        || async {
            let output = env
                .kubectl()
                .args(["get", "namespace", &namespace])
                .output()
                .await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&output.stderr).contains("NotFound"))
        },
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), &namespace);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn service_account_token_is_refused_what_its_role_does_not_allow() {
    let env = env().await;
    env.apply_yaml(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: reader}
"#,
    )
    .await
    .unwrap();
    let token = env.service_account_token("reader").await.unwrap();
    let kubeconfig = env.kubeconfig_with_token(&token).await.unwrap();
    let as_reader = |args: &[&str]| {
        let mut command = tokio::process::Command::new("kubectl");
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        command
    };
    let allowed = as_reader(&["get", "pods"]).output().await.unwrap();
    assert!(
        allowed.status.success(),
        "listing pods: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    for denied in [
        vec!["get", "secrets"],
        vec!["create", "configmap", "nope", "--from-literal=a=b"],
        vec!["delete", "pod", "any-pod"],
        vec!["get", "pods", "--namespace", "kube-system"],
    ] {
        let output = as_reader(&denied).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "kubectl {denied:?} was allowed");
        assert!(
            stderr.contains("Forbidden") || stderr.contains("forbidden"),
            "kubectl {denied:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("system:serviceaccount:{}:reader", env.namespace())),
            "{stderr}"
        );
    }
    // The same through the API: a client with the token is refused with 403.
    let client = env.client_with_token(&token).await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, env.namespace());
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("listing secrets with a pod-reader token: {other:?}"),
    }
}
