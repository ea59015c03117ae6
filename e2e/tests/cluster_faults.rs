//! Every fault mode of the fault proxy is observable: latency, 500s, 429s, cut watches, and the
//! request log (method, path, user agent, status). The proxy works in front of any cluster, so
//! these run on the shared one. Real `410 Gone` from etcd compaction needs a private cluster
//! and is in `cluster_private.rs`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use ramp_e2e::cluster::{TestEnv, eventually, for_test, kubeconfig};
use ramp_e2e::faults::{FaultProxy, FaultSpec, InjectedFault};
use std::sync::atomic::Ordering;

async fn proxy(env: &TestEnv, spec: &str) -> FaultProxy {
    let upstream = kubeconfig::config_from_file(env.kubeconfig_path())
        .await
        .unwrap();
    FaultProxy::start(upstream, spec.parse::<FaultSpec>().unwrap())
        .await
        .unwrap()
}

/// A client through the proxy that does not retry, so injected answers reach the test.
fn raw_client(proxy: &FaultProxy, user_agent: &str) -> Client {
    let mut config = kube::Config::new(proxy.url().parse().unwrap());
    config.default_retry = false;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(user_agent).unwrap(),
    ));
    Client::try_from(config).unwrap()
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({ "metadata": { "name": name }, "data": { "k": "v" } }),
    )
    .unwrap()
}

#[tokio::test]
async fn requests_are_logged_with_method_path_user_agent_and_status() {
    let env = for_test().await.unwrap();
    let proxy = proxy(&env, "none").await;
    let client = raw_client(&proxy, "ramp-e2e-logger/1");
    let maps: Api<ConfigMap> = Api::namespaced(client, env.namespace());
    maps.create(&PostParams::default(), &configmap("logged"))
        .await
        .unwrap();
    maps.get("logged").await.unwrap();
    assert!(maps.get("missing").await.is_err());
    let log = proxy.requests();
    let ours: Vec<_> = log
        .iter()
        .filter(|r| r.user_agent == "ramp-e2e-logger/1")
        .collect();
    let path = format!("/api/v1/namespaces/{}/configmaps", env.namespace());
    assert_eq!(ours.len(), 3, "{log:#?}");
    assert_eq!((ours[0].method.as_str(), ours[0].status), ("POST", 201));
    assert!(ours[0].path.starts_with(&path) && ours[0].is_write());
    assert_eq!(
        (
            ours[1].method.as_str(),
            ours[1].path.as_str(),
            ours[1].status
        ),
        ("GET", format!("{path}/logged").as_str(), 200)
    );
    assert_eq!(ours[2].status, 404);
    assert!(ours.iter().all(|r| r.injected.is_none()));
    assert_eq!(proxy.stats().requests.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let env = for_test().await.unwrap();
    let proxy = proxy(&env, "latency=300ms").await;
    let maps: Api<ConfigMap> = Api::namespaced(raw_client(&proxy, "latency-test"), env.namespace());
    let began = Instant::now();
    maps.list(&Default::default()).await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "took {:?}",
        began.elapsed()
    );
    assert!(proxy.requests()[0].took >= Duration::from_millis(300));
}

#[tokio::test]
async fn error_and_throttle_rates_answer_500_and_429() {
    let env = for_test().await.unwrap();
    let proxy = proxy(&env, "error-rate=1").await;
    let maps: Api<ConfigMap> = Api::namespaced(raw_client(&proxy, "errors"), env.namespace());
    match maps.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(
            (status.code, status.reason.as_str()),
            (500, "InternalError")
        ),
        other => panic!("expected an injected 500, got {other:?}"),
    }
    proxy.set_faults("throttle-rate=1".parse().unwrap());
    match maps.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(
            (status.code, status.reason.as_str()),
            (429, "TooManyRequests")
        ),
        other => panic!("expected an injected 429, got {other:?}"),
    }
    // Mixed rates hit roughly their share (seeded, so the counts are stable).
    proxy.set_faults("error-rate=0.2,throttle-rate=0.3,seed=7".parse().unwrap());
    proxy.clear_requests();
    for _ in 0..200 {
        let _ = maps.list(&Default::default()).await;
    }
    let log = proxy.requests();
    let errors = log
        .iter()
        .filter(|r| r.injected == Some(InjectedFault::Error) && r.status == 500)
        .count();
    let throttles = log
        .iter()
        .filter(|r| r.injected == Some(InjectedFault::Throttle) && r.status == 429)
        .count();
    let passed = log
        .iter()
        .filter(|r| r.injected.is_none() && r.status == 200)
        .count();
    assert_eq!(errors + throttles + passed, 200);
    assert!(
        (20..=60).contains(&errors),
        "{errors} errors of 200 at rate 0.2"
    );
    assert!(
        (35..=85).contains(&throttles),
        "{throttles} throttles of 200 at rate 0.3"
    );
}

#[tokio::test]
async fn watches_are_cut_and_watchers_recover() {
    let env = for_test().await.unwrap();
    let proxy = proxy(&env, "cut-watch=1s").await;
    let client = raw_client(&proxy, "watch-cut-test");
    let maps: Api<ConfigMap> = Api::namespaced(client, env.namespace());

    // A raw watch ends with an error after about a second.
    let began = Instant::now();
    let mut stream = maps
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let mut ended_with_error = false;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        if let Err(error) = item {
            eprintln!("watch ended: {error}");
            ended_with_error = true;
            break;
        }
        if let Ok(WatchEvent::Error(error)) = item {
            panic!("unexpected watch error event: {error:?}");
        }
    }
    let lasted = began.elapsed();
    assert!(
        lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(5),
        "watch lasted {lasted:?}"
    );
    assert!(ended_with_error || proxy.stats().watches_cut.load(Ordering::Relaxed) >= 1);
    assert!(proxy.stats().watches_cut.load(Ordering::Relaxed) >= 1);

    // kube-runtime's watcher re-watches after each cut and still sees every change.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = seen.clone();
    let watching = tokio::spawn(async move {
        let mut events = watcher(maps, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(map) | watcher::Event::InitApply(map)) = event
                && let Some(name) = map.metadata.name
            {
                recorder.lock().unwrap().push(name);
            }
        }
    });
    let direct: Api<ConfigMap> = Api::namespaced(env.client(), env.namespace());
    for index in 0..4 {
        direct
            .create(
                &PostParams::default(),
                &configmap(&format!("during-cuts-{index}")),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    eventually(
        "the watcher to see all four ConfigMaps",
        Duration::from_secs(20),
        || async {
            let seen = seen.lock().unwrap();
            Ok::<_, std::convert::Infallible>(
                (0..4).all(|i| seen.contains(&format!("during-cuts-{i}"))),
            )
        },
    )
    .await
    .unwrap();
    watching.abort();
    let watches = proxy
        .requests()
        .iter()
        .filter(|r| r.watch && r.user_agent == "watch-cut-test")
        .count();
    assert!(watches >= 3, "the watcher re-watched only {watches} times");
}
