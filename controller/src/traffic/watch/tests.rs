use serde_json::{Value, json};

use super::*;

fn mk_rollout(namespace: &str, name: &str, traffic_routing: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}},
            "strategy": {"canary": {
                "stableService": "web-stable",
                "canaryService": "web-canary",
                "trafficRouting": traffic_routing,
            }},
        },
    }))
    .expect("a valid Rollout")
}

fn object(kind: RouterKind, namespace: &str, name: &str) -> RouterObject {
    RouterObject::new(kind, namespace, name)
}

fn names(refs: Vec<RolloutRef>) -> Vec<String> {
    let mut names: Vec<String> = refs
        .into_iter()
        .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
        .collect();
    names.sort();
    names
}

#[test]
fn each_router_names_its_objects() {
    let gateway = mk_rollout(
        "shop",
        "web",
        json!({"plugins": {"argoproj-labs/gatewayAPI": {
            "httpRoute": "main",
            "httpRoutes": [{"name": "extra", "useHeaderRoutes": true}],
            "grpcRoute": "rpc",
            "namespace": "gateways",
        }}}),
    );
    assert_eq!(
        router_objects(&gateway),
        BTreeSet::from([
            object(RouterKind::HttpRoute, "gateways", "main"),
            object(RouterKind::HttpRoute, "gateways", "extra"),
            object(RouterKind::GrpcRoute, "gateways", "rpc"),
        ])
    );

    let nginx = mk_rollout(
        "shop",
        "web",
        json!({"nginx": {"stableIngress": "a", "stableIngresses": ["b"]}}),
    );
    assert_eq!(
        router_objects(&nginx),
        BTreeSet::from([
            object(RouterKind::Ingress, "shop", "a"),
            object(RouterKind::Ingress, "shop", "web-a-canary"),
            object(RouterKind::Ingress, "shop", "b"),
            object(RouterKind::Ingress, "shop", "web-b-canary"),
        ])
    );

    let smi = mk_rollout("shop", "web", json!({"smi": {}}));
    assert_eq!(
        router_objects(&smi),
        BTreeSet::from([object(RouterKind::TrafficSplit, "shop", "web")])
    );
    let named = mk_rollout("shop", "web", json!({"smi": {"trafficSplitName": "split"}}));
    assert_eq!(
        router_objects(&named),
        BTreeSet::from([object(RouterKind::TrafficSplit, "shop", "split")])
    );

    let istio = mk_rollout(
        "shop",
        "web",
        json!({"istio": {
            "virtualService": {"name": "vs"},
            "virtualServices": [{"name": "other.mesh"}],
            "destinationRule": {"name": "dr", "canarySubsetName": "c", "stableSubsetName": "s"},
        }}),
    );
    assert_eq!(
        router_objects(&istio),
        BTreeSet::from([
            object(RouterKind::VirtualService, "shop", "vs"),
            object(RouterKind::VirtualService, "mesh", "other"),
            object(RouterKind::DestinationRule, "shop", "dr"),
        ])
    );
}

#[test]
fn rollouts_without_routers_name_nothing() {
    let mut rollout = mk_rollout("shop", "web", json!({}));
    assert!(router_objects(&rollout).is_empty());
    rollout.spec.strategy = None;
    assert!(router_objects(&rollout).is_empty());
}

#[test]
fn index_follows_changes_and_deletions() {
    let index = RouterIndex::default();
    let route = object(RouterKind::HttpRoute, "shop", "main");
    let gateway = |name: &str, route: &str| {
        mk_rollout(
            "shop",
            name,
            json!({"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": route}}}),
        )
    };
    index.apply(&gateway("a", "main"));
    index.apply(&gateway("b", "main"));
    assert_eq!(names(index.rollouts_of(&route)), ["shop/a", "shop/b"]);
    assert_eq!(index.kinds(), BTreeSet::from([RouterKind::HttpRoute]));

    // `b` moves to another route, then `a` is deleted.
    index.apply(&gateway("b", "other"));
    assert_eq!(names(index.rollouts_of(&route)), ["shop/a"]);
    assert_eq!(
        names(index.rollouts_of(&object(RouterKind::HttpRoute, "shop", "other"))),
        ["shop/b"]
    );
    index.delete(&gateway("a", "main"));
    assert!(index.rollouts_of(&route).is_empty());

    // Same name in another namespace is another object.
    assert!(
        index
            .rollouts_of(&object(RouterKind::HttpRoute, "elsewhere", "other"))
            .is_empty()
    );
}

#[test]
fn a_relist_replaces_the_index_when_complete() {
    let index = RouterIndex::default();
    let smi = |name: &str| mk_rollout("shop", name, json!({"smi": {}}));
    index.apply(&smi("gone"));
    index.observe(&watcher::Event::Init);
    index.observe(&watcher::Event::InitApply(smi("kept")));
    // Until the relist is done, the old view answers.
    let gone = object(RouterKind::TrafficSplit, "shop", "gone");
    assert_eq!(names(index.rollouts_of(&gone)), ["shop/gone"]);
    index.observe(&watcher::Event::InitDone);
    assert!(index.rollouts_of(&gone).is_empty());
    assert_eq!(
        names(index.rollouts_of(&object(RouterKind::TrafficSplit, "shop", "kept"))),
        ["shop/kept"]
    );

    index.reset([&smi("other")]);
    assert!(
        index
            .rollouts_of(&object(RouterKind::TrafficSplit, "shop", "kept"))
            .is_empty()
    );
    assert_eq!(
        names(index.rollouts_of(&object(RouterKind::TrafficSplit, "shop", "other"))),
        ["shop/other"]
    );
}

#[tokio::test]
async fn a_kind_named_for_the_first_time_wakes_the_supervisor() {
    let index = RouterIndex::default();
    index.apply(&mk_rollout("shop", "a", json!({"smi": {}})));
    tokio::time::timeout(Duration::from_secs(1), index.new_kind.notified())
        .await
        .expect("woken for TrafficSplit");
    // A second Rollout of a kind already named does not wake it again.
    index.apply(&mk_rollout("shop", "b", json!({"smi": {}})));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), index.new_kind.notified())
            .await
            .is_err()
    );
}
