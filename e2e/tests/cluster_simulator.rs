//! The kubelet simulator's documented conventions (see `ramp_e2e::kubelet`), on the shared
//! cluster when it is simulated; skipped against a cluster with real kubelets.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use ramp_e2e::cluster::{TestEnv, eventually, for_test};

async fn simulated_env() -> Option<TestEnv> {
    let env = for_test().await.expect("a test cluster");
    if env.is_simulated().await.expect("listing nodes") {
        Some(env)
    } else {
        eprintln!("skipping: the cluster's pods are not run by Ramp's kubelet simulator");
        None
    }
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn pod_yaml(name: &str, image: &str, annotations: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n"
    )
}

#[tokio::test]
async fn ready_after_annotation_delays_readiness() {
    let Some(env) = simulated_env().await else {
        return;
    };
    env.apply_yaml(&pod_yaml("slow", "demo:1", "ramp.e2e/ready-after: 2s", ""))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    let began = Instant::now();
    eventually("pod slow Running", Duration::from_secs(20), || async {
        Ok::<_, kube::Error>(phase(&pods.get("slow").await?) == "Running")
    })
    .await
    .unwrap();
    assert!(
        !ready(&pods.get("slow").await.unwrap()),
        "Ready before its 2s delay"
    );
    eventually("pod slow Ready", Duration::from_secs(20), || async {
        Ok::<_, kube::Error>(ready(&pods.get("slow").await?))
    })
    .await
    .unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "Ready after {took:?}, annotation said 2s"
    );
}

#[tokio::test]
async fn ready_annotation_holds_a_pod_unready_until_removed() {
    let Some(env) = simulated_env().await else {
        return;
    };
    env.apply_yaml(&pod_yaml("held", "demo:1", "ramp.e2e/ready: \"false\"", ""))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    eventually("pod held Running", Duration::from_secs(20), || async {
        Ok::<_, kube::Error>(phase(&pods.get("held").await?) == "Running")
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ready(&pods.get("held").await.unwrap()));
    env.run_kubectl(&["annotate", "pod", "held", "ramp.e2e/ready-"])
        .await
        .unwrap();
    eventually(
        "pod held Ready once released",
        Duration::from_secs(20),
        || async { Ok::<_, kube::Error>(ready(&pods.get("held").await?)) },
    )
    .await
    .unwrap();
    env.run_kubectl(&["annotate", "pod", "held", "ramp.e2e/ready=false"])
        .await
        .unwrap();
    eventually(
        "pod held unready again",
        Duration::from_secs(20),
        || async { Ok::<_, kube::Error>(!ready(&pods.get("held").await?)) },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn crashloop_image_restarts_with_rising_counts() {
    let Some(env) = simulated_env().await else {
        return;
    };
    env.run_kubectl(&["run", "crashy", "--image=demo:1-crashloop"])
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    eventually(
        "restartCount ≥ 2 in CrashLoopBackOff",
        Duration::from_secs(30),
        || async {
            let pod = pods.get("crashy").await?;
            let status = pod
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next());
            Ok::<_, kube::Error>(status.is_some_and(|c| {
                c.restart_count >= 2
                    && c.state
                        .and_then(|s| s.waiting)
                        .and_then(|w| w.reason)
                        .as_deref()
                        == Some("CrashLoopBackOff")
                    && c.last_state
                        .and_then(|s| s.terminated)
                        .is_some_and(|t| t.exit_code == 1)
            }))
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn bare_pods_end_by_restart_policy_and_command() {
    let Some(env) = simulated_env().await else {
        return;
    };
    let with_command = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sh, -c, '{script}']\n"
        )
    };
    env.apply_yaml(
        &[
            with_command("sleeps", "Never", "sleep 1"),
            with_command("fails", "Never", "exit 3"),
            with_command("retries", "OnFailure", "exit 2"),
            with_command("server", "Always", "while true; do sleep 1; done"),
        ]
        .join("---\n"),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    eventually(
        "sleeps Succeeded and fails Failed",
        Duration::from_secs(20),
        || async {
            Ok::<_, kube::Error>(
                phase(&pods.get("sleeps").await?) == "Succeeded"
                    && phase(&pods.get("fails").await?) == "Failed",
            )
        },
    )
    .await
    .unwrap();
    let failed = pods.get("fails").await.unwrap();
    let terminated = failed.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (3, Some("Error"))
    );
    eventually(
        "retries restarting in place",
        Duration::from_secs(20),
        || async {
            let pod = pods.get("retries").await?;
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c[0].restart_count);
            Ok::<_, kube::Error>(phase(&pod) == "Running" && restarts >= 1)
        },
    )
    .await
    .unwrap();
    let server = pods.get("server").await.unwrap();
    assert_eq!(phase(&server), "Running");
    assert!(ready(&server));
}

#[tokio::test]
async fn many_pods_get_unique_ips_and_deleted_pods_go_at_once() {
    let Some(env) = simulated_env().await else {
        return;
    };
    env.run_kubectl(&[
        "create",
        "deployment",
        "many",
        "--image=demo:1",
        "--replicas=60",
    ])
    .await
    .unwrap();
    env.run_kubectl(&[
        "wait",
        "--for=condition=Available",
        "--timeout=60s",
        "deployment/many",
    ])
    .await
    .unwrap();
    // `Available` allows 25% of the pods to be missing still: wait for all sixty to run.
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    let selector = ListParams::default().labels("app=many");
    eventually(
        "60 running pods with an IP",
        Duration::from_secs(60),
        || {
            let (pods, selector) = (pods.clone(), selector.clone());
            async move {
                let list = pods.list(&selector).await?;
                let with_ip = list
                    .items
                    .iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
                    .count();
                Ok::<_, kube::Error>(with_ip == 60)
            }
        },
    )
    .await
    .unwrap();
    let list = pods.list(&selector).await.unwrap();
    let mut ips: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 60);
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 60, "pod IPs are not unique");
    let node = list.items[0]
        .spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap();
    assert!(node.starts_with("ramp-sim-node"), "bound to {node}");

    // A graceful delete (30s by default) finishes at once: the simulated kubelet confirms it.
    let began = Instant::now();
    env.run_kubectl(&[
        "delete",
        "pod",
        &list.items[0].metadata.name.clone().unwrap(),
    ])
    .await
    .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "deletion took {:?}",
        began.elapsed()
    );
}
