//! What needs a private cluster: real `410 Gone` after etcd compaction with the watch cache
//! off, the lifecycle of a cluster (everything stops and its data goes on drop), and a cluster
//! started with a fault proxy in front of its kubeconfig. Skipped when the tests run against an
//! external cluster on a machine without the binaries.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use ramp_e2e::cluster::{ClusterOptions, private_cluster};

#[tokio::test]
async fn compaction_with_the_watch_cache_off_expires_old_resource_versions() {
    let options = ClusterOptions {
        watch_cache: false,
        simulator: false,
        ..ClusterOptions::default()
    };
    let Some(cluster) = private_cluster(options).await.unwrap() else {
        return;
    };
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
    let created = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "old"}})).unwrap(),
        )
        .await
        .unwrap();
    let old_version = created.metadata.resource_version.unwrap();
    for round in 0..3 {
        maps.patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"round": round.to_string()}})),
        )
        .await
        .unwrap();
    }
    // Before compaction the old version is still watchable.
    let mut before = maps
        .watch(&WatchParams::default().timeout(5), &old_version)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), before.next())
        .await
        .unwrap()
    {
        Some(Ok(WatchEvent::Modified(_))) => {}
        other => panic!("expected the first modification, got {other:?}"),
    }
    let revision = cluster.compact_etcd().await.unwrap();
    assert!(revision > old_version.parse::<i64>().unwrap());
    let expired = match maps
        .watch(&WatchParams::default().timeout(5), &old_version)
        .await
    {
        Err(kube::Error::Api(status)) => status.code,
        Ok(stream) => match tokio::time::timeout(Duration::from_secs(5), stream.boxed().next())
            .await
            .unwrap()
        {
            Some(Ok(WatchEvent::Error(error))) => error.code,
            other => panic!("expected an error event after compaction, got {other:?}"),
        },
        Err(other) => panic!("expected 410 after compaction, got {other}"),
    };
    assert_eq!(expired, 410);
}

#[tokio::test]
async fn dropping_a_cluster_stops_its_processes_and_removes_its_data() {
    let Some(cluster) = private_cluster(ClusterOptions::default()).await.unwrap() else {
        return;
    };
    let pids = cluster.process_ids();
    let names: Vec<&str> = pids.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager"]);
    let dir = cluster.data_dir().to_path_buf();
    assert!(dir.join("kubeconfig").is_file());
    let timings = cluster.start_timings().clone();
    eprintln!(
        "started in {:?} (API server {:?})",
        timings.total, timings.apiserver_ready
    );
    drop(cluster);
    for (name, pid) in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still runs"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn a_cluster_with_faults_serves_its_fault_kubeconfig_through_the_proxy() {
    let options = ClusterOptions {
        faults: Some("latency=20ms".parse().unwrap()),
        ..ClusterOptions::default()
    };
    let Some(cluster) = private_cluster(options).await.unwrap() else {
        return;
    };
    let proxy = cluster.fault_proxy().expect("a fault proxy");
    let kubeconfig = proxy.kubeconfig_path().expect("the proxy's kubeconfig");
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespace", "default", "-o", "name"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "namespace/default"
    );
    let log = proxy.requests();
    let from_kubectl = log.iter().find(|r| {
        r.user_agent.starts_with("kubectl") && r.path.starts_with("/api/v1/namespaces/default")
    });
    let record =
        from_kubectl.unwrap_or_else(|| panic!("kubectl's request is not in the log: {log:#?}"));
    assert_eq!((record.method.as_str(), record.status), ("GET", 200));
    assert!(record.took >= Duration::from_millis(20));
}
