//! Canary Rollouts with a traffic router on the test cluster, with the routers' real CRDs
//! installed (Gateway API HTTPRoute, Istio, SMI; Ingress is built in) and Ramp's controller
//! in-process with exactly the Helm chart's RBAC: the weights at each step, header routes
//! added and removed, abort moving traffic back first, a user's edit of a router object
//! mid-rollout (Ramp restores only its own fields), a missing router object, and Argo
//! Rollouts' own router manifests run unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use ramp_controller::api::RolloutPhase;
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use ramp_e2e::fixtures::rollouts::{abort, canary_rollout, healthy, promote, wait_for};
use serde_json::{Value, json};

mod traffic_support;
use traffic_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_steps_header_route_user_edit_and_abort() -> TestResult {
    let s = Scenario::start(&["gateway-api/gateway.networking.k8s.io_httproutes.yaml"]).await?;
    s.create_services("gw").await?;
    s.create_object(
        &http_routes(),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "gw-route"},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backendRefs": [{"name": "gw-stable", "port": 80, "weight": 100},
                                     {"name": "gw-canary", "port": 80, "weight": 0}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                     "backendRefs": [{"name": "static", "port": 80}]}
                ]
            }
        }),
    )
    .await?;
    let canary = json!({
        "stableService": "gw-stable", "canaryService": "gw-canary",
        "trafficRouting": {
            "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "gw-route", "namespace": s.ns()}},
            "managedRoutes": [{"name": "canary-header"}]
        },
        "steps": [
            {"setWeight": 20}, {"pause": {}},
            {"setHeaderRoute": {"name": "canary-header", "match": [
                {"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}},
            {"setWeight": 50}, {"pause": {}}
        ]
    });
    let rollout = canary_rollout("gw", 4, "demo:1", canary);
    s.rollouts()
        .create(&PostParams::default(), &rollout)
        .await?;
    let first = s.wait("gw", "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let route = s.object(&http_routes(), "gw-route").await?.data["spec"].clone();
    assert_eq!(
        gateway_weights(&route, "gw-stable", "gw-canary"),
        vec![(100, 0)]
    );

    s.set_image("gw", "app", "demo:2").await?;
    let at_20 = s.wait("gw", "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&at_20).current_pod_hash.unwrap_or_default();
    let route = s
        .wait_spec(&http_routes(), "gw-route", "weights 80/20", |spec| {
            gateway_weights(spec, "gw-stable", "gw-canary") == vec![(80, 20)]
        })
        .await?;
    assert_eq!(
        route["rules"][1]["backendRefs"],
        json!([{"kind": "Service", "name": "static", "port": 80, "weight": 1}]),
        "the user's other rule is untouched (API defaults aside)"
    );
    let sizes = s.sizes("gw").await;
    assert_eq!(sizes.get(&v2), Some(&1), "canary = ceil(20% of 4)");
    assert_eq!(
        sizes.get(&v1),
        Some(&4),
        "the stable stays whole with a router"
    );

    // A user edits the route mid-rollout: Ramp restores its weights and keeps the rest.
    s.edit_spec(&http_routes(), "gw-route", |spec| {
        spec["rules"][0]["backendRefs"][0]["weight"] = json!(0);
        spec["rules"][0]["backendRefs"][1]["weight"] = json!(100);
        spec["rules"]
            .as_array_mut()
            .map(|rules| {
                rules.push(json!({
                    "matches": [{"path": {"type": "PathPrefix", "value": "/beta"}}],
                    "backendRefs": [{"name": "beta", "port": 80}]
                }))
            })
            .unwrap_or_default();
    })
    .await?;
    let (route, _) = s
        .restored(
            &http_routes(),
            "gw-route",
            "weights restored to 80/20",
            |spec| gateway_weights(spec, "gw-stable", "gw-canary") == vec![(80, 20)],
        )
        .await?;
    assert_eq!(route["rules"].as_array().map(Vec::len), Some(3));
    assert_eq!(route["rules"][2]["backendRefs"][0]["name"], "beta");

    promote(&s.rollouts(), "gw").await?;
    s.wait("gw", "paused at step 4", paused_at(4)).await?;
    let route = s
        .wait_spec(
            &http_routes(),
            "gw-route",
            "weights 50/50 with the header rule",
            |spec| {
                gateway_weights(spec, "gw-stable", "gw-canary") == vec![(50, 50)]
                    && rule_names(spec) == vec!["canary-header".to_string()]
            },
        )
        .await?;
    let header_rule = &route["rules"][0];
    assert_eq!(header_rule["backendRefs"][0]["name"], "gw-canary");
    assert_eq!(
        header_rule["matches"][0]["headers"],
        json!([{"name": "X-Canary", "type": "Exact", "value": "yes"}])
    );
    assert_eq!(header_rule["matches"][0]["path"]["value"], "/");

    abort(&s.rollouts(), "gw").await?;
    s.wait("gw", "aborted", aborted).await?;
    let route = s
        .wait_spec(
            &http_routes(),
            "gw-route",
            "all traffic on stable, no header rule",
            |spec| {
                gateway_weights(spec, "gw-stable", "gw-canary") == vec![(100, 0)]
                    && rule_names(spec).is_empty()
            },
        )
        .await?;
    assert_eq!(route["rules"].as_array().map(Vec::len), Some(3));
    wait_for("the canary scaled down after abort", WAIT, || async {
        let sizes = s.sizes("gw").await;
        (sizes.get(&v1) == Some(&4)).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_runs_to_completion_with_max_traffic_weight() -> TestResult {
    let s = Scenario::start(&["gateway-api/gateway.networking.k8s.io_httproutes.yaml"]).await?;
    s.create_services("gwm").await?;
    s.create_object(
        &http_routes(),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "gwm-route"},
            "spec": {"rules": [{"backendRefs": [
                {"name": "gwm-stable", "port": 80}, {"name": "gwm-canary", "port": 80}]}]}
        }),
    )
    .await?;
    let canary = json!({
        "stableService": "gwm-stable", "canaryService": "gwm-canary",
        "trafficRouting": {
            "maxTrafficWeight": 1000,
            "plugins": {"argoproj-labs/gatewayAPI": {"httpRoutes": [{"name": "gwm-route", "useHeaderRoutes": true}]}},
            "managedRoutes": [{"name": "mirror"}]
        },
        "steps": [
            {"setMirrorRoute": {"name": "mirror", "percentage": 30, "match": [{"method": {"exact": "GET"}}]}},
            {"setWeight": 250}, {"pause": {}}, {"setWeight": 500}, {"pause": {"duration": "1s"}}
        ]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("gwm", 4, "demo:1", canary),
        )
        .await?;
    s.wait("gwm", "Healthy", healthy).await?;
    s.set_image("gwm", "app", "demo:2").await?;
    let paused = s.wait("gwm", "paused at step 2", paused_at(2)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    let route = s
        .wait_spec(
            &http_routes(),
            "gwm-route",
            "weights 750/250 and a mirror rule",
            |spec| {
                gateway_weights(spec, "gwm-stable", "gwm-canary") == vec![(750, 250)]
                    && rule_names(spec) == vec!["mirror".to_string()]
            },
        )
        .await?;
    assert_eq!(
        route["rules"][0]["filters"][0]["requestMirror"]["percent"],
        json!(30)
    );
    assert_eq!(
        s.sizes("gwm").await.get(&v2),
        Some(&1),
        "canary = ceil(250 × 4 / 1000)"
    );
    promote(&s.rollouts(), "gwm").await?;
    let done = s.wait("gwm", "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    });
    done.await?;
    s.wait_spec(
        &http_routes(),
        "gwm-route",
        "all traffic on stable, routes gone",
        |spec| {
            gateway_weights(spec, "gwm-stable", "gwm-canary") == vec![(1000, 0)]
                && rule_names(spec).is_empty()
        },
    )
    .await?;
    Ok(())
}

/// A GRPCRoute CRD of Ramp's own for the API server to store GRPCRoutes (the reference
/// copy has the HTTPRoute CRD only): the fields Ramp writes are typed, the rest is kept.
const GRPC_ROUTE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: grpcroutes.gateway.networking.k8s.io
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes-sigs/gateway-api/pull/4530"}
spec:
  group: gateway.networking.k8s.io
  names: {kind: GRPCRoute, listKind: GRPCRouteList, plural: grpcroutes, singular: grpcroute}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              properties:
                rules:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      backendRefs:
                        type: array
                        items:
                          type: object
                          required: [name]
                          properties:
                            group: {type: string}
                            kind: {type: string}
                            name: {type: string}
                            namespace: {type: string}
                            port: {type: integer, format: int32}
                            weight: {type: integer, format: int32, minimum: 0, maximum: 1000000}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// `trafficRouting.plugins["argoproj-labs/gatewayAPI"].grpcRoute`: the weights of the
/// GRPCRoute's backendRefs follow the steps; a rule of the user's is kept as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_grpc_route_follows_the_steps_and_abort() -> TestResult {
    let s = Scenario::start(&["gateway-api/gateway.networking.k8s.io_httproutes.yaml"]).await?;
    ramp_e2e::fixtures::crds::install_crds(
        &s.client(),
        GRPC_ROUTE_CRD,
        "GRPC_ROUTE_CRD",
        "ramp-e2e-traffic",
    )
    .await?;
    s.create_services("grpc").await?;
    let user_rule = json!({
        "matches": [{"method": {"service": "admin.Admin"}}],
        "backendRefs": [{"name": "admin", "port": 9000}]
    });
    s.create_object(
        &grpc_routes(),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "grpc-route"},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [
                    {"backendRefs": [{"name": "grpc-stable", "port": 9000, "weight": 100},
                                     {"name": "grpc-canary", "port": 9000, "weight": 0}]},
                    user_rule.clone()
                ]
            }
        }),
    )
    .await?;
    let canary = json!({
        "stableService": "grpc-stable", "canaryService": "grpc-canary",
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"grpcRoute": "grpc-route"}}},
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("grpc", 4, "demo:1", canary),
        )
        .await?;
    s.wait("grpc", "Healthy", healthy).await?;
    s.set_image("grpc", "app", "demo:2").await?;
    s.wait("grpc", "paused at step 1", paused_at(1)).await?;
    s.wait_spec(&grpc_routes(), "grpc-route", "weights 75/25", |spec| {
        gateway_weights(spec, "grpc-stable", "grpc-canary") == vec![(75, 25)]
    })
    .await?;
    promote(&s.rollouts(), "grpc").await?;
    s.wait("grpc", "paused at step 3", paused_at(3)).await?;
    let spec = s
        .wait_spec(&grpc_routes(), "grpc-route", "weights 40/60", |spec| {
            gateway_weights(spec, "grpc-stable", "grpc-canary") == vec![(40, 60)]
        })
        .await?;
    assert_eq!(spec["rules"][1], user_rule, "the user's rule is kept");
    abort(&s.rollouts(), "grpc").await?;
    s.wait("grpc", "aborted", aborted).await?;
    let spec = s
        .wait_spec(&grpc_routes(), "grpc-route", "all back on stable", |spec| {
            gateway_weights(spec, "grpc-stable", "grpc-canary") == vec![(100, 0)]
        })
        .await?;
    assert_eq!(spec["rules"][1], user_rule, "the user's rule is kept");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_router_object_is_invalid_spec_and_nothing_scales() -> TestResult {
    let s = Scenario::start(&["gateway-api/gateway.networking.k8s.io_httproutes.yaml"]).await?;
    s.create_services("lost").await?;
    let canary = json!({
        "stableService": "lost-stable", "canaryService": "lost-canary",
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "absent"}}},
        "steps": [{"setWeight": 20}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("lost", 2, "demo:1", canary),
        )
        .await?;
    let invalid = s
        .wait("lost", "InvalidSpec naming the HTTPRoute", |r| {
            status_of(r).conditions.unwrap_or_default().iter().any(|c| {
                c.type_ == "InvalidSpec"
                    && c.message.contains(&format!("HTTPRoute/{}/absent", s.ns()))
            })
        })
        .await?;
    assert_eq!(status_of(&invalid).phase, Some(RolloutPhase::Degraded));
    assert!(
        s.sizes("lost").await.is_empty(),
        "no ReplicaSet before the route exists"
    );
    Ok(())
}

/// Argo's NGINX template (`REPLACEME` replaced, as Argo's own tests do), with steps and a
/// header route added by a patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_canary_ingress_steps_header_route_user_edit_and_abort() -> TestResult {
    let s = Scenario::start(&[]).await?;
    let app = "ngx";
    let yaml = reference("argo-rollouts/test/e2e/functional/nginx-template.yaml")?
        .replace("REPLACEME", app);
    s.env.apply_yaml(&yaml).await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let ingresses: Api<Ingress> = Api::namespaced(s.client(), s.ns());
    let canary_name = format!("{app}-{app}-ingress-canary");
    let annotations = |ingress: &Ingress| ingress.metadata.annotations.clone().unwrap_or_default();
    let wait_ingress = |what: &'static str, check: AnnotationCheck| {
        let ingresses = ingresses.clone();
        let canary_name = canary_name.clone();
        async move {
            wait_for(what, WAIT, || async {
                let ingress = ingresses.get_opt(&canary_name).await.ok().flatten()?;
                check(&annotations(&ingress)).then_some(ingress)
            })
            .await
        }
    };
    let created = wait_ingress(
        "the canary Ingress at weight 0",
        Box::new(|a| {
            a.get("nginx.ingress.kubernetes.io/canary-weight")
                .map(String::as_str)
                == Some("0")
        }),
    )
    .await?;
    let a = annotations(&created);
    assert_eq!(a["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(a["kubernetes.io/ingress.class"], "nginx");
    assert!(
        created
            .owner_references()
            .iter()
            .any(|o| o.kind == "Rollout" && o.name == app && o.controller == Some(true)),
        "the canary Ingress belongs to the Rollout"
    );
    let backend = created
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_ref())
        .and_then(|r| {
            r[0].http.as_ref()?.paths[0]
                .backend
                .service
                .as_ref()
                .map(|s| s.name.clone())
        });
    assert_eq!(backend.as_deref(), Some("ngx-canary"));

    let patch = json!({"spec": {
        "template": {"spec": {"containers": [{"name": app, "image": "nginx:1.20-alpine"}]}},
        "strategy": {"canary": {
            "trafficRouting": {
                "nginx": {"stableIngress": "ngx-ingress",
                          "additionalIngressAnnotations": {"canary-by-header": "X-Legacy"}},
                "managedRoutes": [{"name": "by-header"}]
            },
            "steps": [
                {"setWeight": 30}, {"pause": {}},
                {"setHeaderRoute": {"name": "by-header", "match": [
                    {"headerName": "X-Canary", "headerValue": {"regex": "^yes$"}}]}},
                {"pause": {}}
            ]
        }}
    }});
    s.rollouts()
        .patch(app, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let paused = s.wait(app, "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    let at_30 = wait_ingress(
        "canary weight 30",
        Box::new(|a| {
            a.get("nginx.ingress.kubernetes.io/canary-weight")
                .map(String::as_str)
                == Some("30")
        }),
    )
    .await?;
    assert_eq!(
        annotations(&at_30)["nginx.ingress.kubernetes.io/canary-by-header"],
        "X-Legacy",
        "additionalIngressAnnotations carry the prefix"
    );
    let sizes = s.sizes(app).await;
    assert_eq!(sizes.get(&v2), Some(&2), "canary = ceil(30% of 4)");
    assert_eq!(sizes.get(&v1), Some(&4));

    // A user edits the canary Ingress Ramp owns: Ramp puts its state back.
    let mut edited = at_30.clone();
    edited
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            "nginx.ingress.kubernetes.io/canary-weight".into(),
            "100".into(),
        );
    ingresses
        .replace(&canary_name, &PostParams::default(), &edited)
        .await?;
    wait_ingress(
        "canary weight restored to 30",
        Box::new(|a| {
            a.get("nginx.ingress.kubernetes.io/canary-weight")
                .map(String::as_str)
                == Some("30")
        }),
    )
    .await?;
    let stable: Ingress = ingresses.get("ngx-ingress").await?;
    assert!(
        !annotations(&stable).contains_key("nginx.ingress.kubernetes.io/canary"),
        "the stable Ingress is only read"
    );

    promote(&s.rollouts(), app).await?;
    s.wait(app, "paused at step 3", paused_at(3)).await?;
    wait_ingress(
        "the header route on the canary Ingress",
        Box::new(|a| {
            a.get("nginx.ingress.kubernetes.io/canary-by-header")
                .map(String::as_str)
                == Some("X-Canary")
                && a.get("nginx.ingress.kubernetes.io/canary-by-header-pattern")
                    .map(String::as_str)
                    == Some("^yes$")
        }),
    )
    .await?;

    abort(&s.rollouts(), app).await?;
    s.wait(app, "aborted", aborted).await?;
    wait_ingress(
        "weight 0 and the header route gone",
        Box::new(|a| {
            a.get("nginx.ingress.kubernetes.io/canary-weight")
                .map(String::as_str)
                == Some("0")
                && a.get("nginx.ingress.kubernetes.io/canary-by-header")
                    .map(String::as_str)
                    == Some("X-Legacy")
                && !a.contains_key("nginx.ingress.kubernetes.io/canary-by-header-pattern")
        }),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smi_traffic_split_follows_the_steps_to_completion() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    s.create_services("mesh").await?;
    let canary = json!({
        "stableService": "mesh-stable", "canaryService": "mesh-canary",
        "trafficRouting": {"smi": {"rootService": "mesh", "trafficSplitName": "mesh-split"}},
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {"duration": "1s"}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("mesh", 4, "demo:1", canary),
        )
        .await?;
    s.wait("mesh", "Healthy", healthy).await?;
    let backends = |spec: &Value| -> Vec<(String, i64)> {
        spec["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["service"].as_str().unwrap_or_default().to_string(),
                    b["weight"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let expect = |canary: i64, stable: i64| {
        vec![
            ("mesh-canary".to_string(), canary),
            ("mesh-stable".to_string(), stable),
        ]
    };
    let split = s.object(&traffic_splits(), "mesh-split").await?;
    assert!(
        split
            .owner_references()
            .iter()
            .any(|o| o.kind == "Rollout" && o.name == "mesh"),
        "Ramp owns the TrafficSplit"
    );
    assert_eq!(split.data["spec"]["service"], "mesh");
    assert_eq!(backends(&split.data["spec"]), expect(0, 100));

    s.set_image("mesh", "app", "demo:2").await?;
    let paused = s.wait("mesh", "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    s.wait_spec(&traffic_splits(), "mesh-split", "25/75", |spec| {
        backends(spec) == expect(25, 75)
    })
    .await?;
    promote(&s.rollouts(), "mesh").await?;
    s.wait("mesh", "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(
        &traffic_splits(),
        "mesh-split",
        "all traffic on stable",
        |spec| backends(spec) == expect(0, 100),
    )
    .await?;
    Ok(())
}

/// Argo's `istio-host-split.yaml`, unchanged: 10 % to the canary, then promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_host_split_from_argo_manifest() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let app = "istio-host-split";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-host-split.yaml",
        )?)
        .await?;
    s.wait(app, "Healthy", healthy).await?;
    s.set_image(app, app, "nginx:1.20-alpine").await?;
    let paused = s.wait(app, "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    s.wait_spec(&virtual_services(), vs, "90/10", |spec| {
        istio_weights(&spec["http"][0], stable, canary) == Some((90, 10))
    })
    .await?;
    // A user adds a route: Ramp keeps it and still restores its weights.
    s.edit_spec(&virtual_services(), vs, |spec| {
        spec["http"][0]["route"][1]["weight"] = json!(60);
        spec["http"][0]["route"][0]["weight"] = json!(40);
        if let Some(http) = spec["http"].as_array_mut() {
            http.push(json!({"name": "docs", "route": [{"destination": {"host": "docs"}}]}));
        }
    })
    .await?;
    let (spec, _) = s
        .restored(&virtual_services(), vs, "restored 90/10", |spec| {
            istio_weights(&spec["http"][0], stable, canary) == Some((90, 10))
        })
        .await?;
    assert_eq!(spec["http"][1]["name"], "docs");
    promote(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(&virtual_services(), vs, "100/0", |spec| {
        istio_weights(&spec["http"][0], stable, canary) == Some((100, 0))
    })
    .await?;
    Ok(())
}

/// Argo's `istio-subset-split.yaml`, unchanged: the subsets follow the pod-template hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_subset_split_from_argo_manifest() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let yaml = reference("argo-rollouts/test/e2e/istio/istio-subset-split.yaml")?;
    let documents = ramp_controller::manifest::parse("istio-subset-split.yaml", &yaml)?;
    let rollout = documents
        .iter()
        .find(|d| d.kind() == Some("Rollout"))
        .ok_or("no Rollout in istio-subset-split.yaml")?;
    let app = rollout.name().unwrap_or_default().to_string();
    let container = rollout.value["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let routing = &rollout.value["spec"]["strategy"]["canary"]["trafficRouting"]["istio"];
    let vs = routing["virtualService"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dr = routing["destinationRule"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let canary_subset = routing["destinationRule"]["canarySubsetName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stable_subset = routing["destinationRule"]["stableSubsetName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.env.apply_yaml(&yaml).await?;
    let first = s.wait(&app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let subset_hash = |spec: &Value, subset: &str| {
        spec["subsets"].as_array().and_then(|subsets| {
            subsets.iter().find(|s| s["name"] == subset).and_then(|s| {
                s["labels"][POD_TEMPLATE_HASH_LABEL]
                    .as_str()
                    .map(String::from)
            })
        })
    };
    s.set_image(&app, &container, "nginx:1.20-alpine").await?;
    let paused = s.wait(&app, "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    s.wait_spec(
        &destination_rules(),
        &dr,
        "subsets labelled with both hashes",
        |spec| {
            subset_hash(spec, &canary_subset).as_deref() == Some(v2.as_str())
                && subset_hash(spec, &stable_subset).as_deref() == Some(v1.as_str())
        },
    )
    .await?;
    let spec = s.object(&virtual_services(), &vs).await?.data["spec"].clone();
    let weights = istio_weights(&spec["http"][0], &stable_subset, &canary_subset)
        .ok_or("no stable and canary subsets in the VirtualService")?;
    assert!(weights.1 > 0 && weights.0 + weights.1 == 100, "{weights:?}");
    promote(&s.rollouts(), &app).await?;
    s.wait(&app, "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(
        &destination_rules(),
        &dr,
        "both subsets on the new revision",
        |spec| subset_hash(spec, &stable_subset).as_deref() == Some(v2.as_str()),
    )
    .await?;
    s.wait_spec(&virtual_services(), &vs, "100/0", |spec| {
        istio_weights(&spec["http"][0], &stable_subset, &canary_subset) == Some((100, 0))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_host_http_tls_split() -> TestResult {
    istio_manifest_completes("argo-rollouts/test/e2e/istio/istio-host-http-tls-split.yaml").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_host_only_tls_split() -> TestResult {
    istio_manifest_completes("argo-rollouts/test/e2e/istio/istio-host-only-tls-split.yaml").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_subset_split_single_route() -> TestResult {
    istio_manifest_completes("argo-rollouts/test/e2e/istio/istio-subset-split-single-route.yaml")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_example_subset_split() -> TestResult {
    istio_manifest_completes("argo-rollouts/examples/istio/istio-subset-split.yaml").await
}

/// Argo's header-routing manifest: the header route follows each `setHeaderRoute` step and
/// is gone at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_header_routes() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let seen = std::sync::Mutex::new(Vec::new());
    run_argo_manifest(
        &s,
        "argo-rollouts/test/e2e/header-routing/istio-hr-host.yaml",
        async |s, _| {
            let spec = s
                .object(&virtual_services(), "rollouts-demo-vsvc")
                .await?
                .data["spec"]
                .clone();
            let header = spec["http"]
                .as_array()
                .and_then(|http| http.iter().find(|r| r["name"] == "set-header-1"))
                .map(|r| r["match"][0]["headers"]["agent"]["regex"].clone());
            if let Ok(mut seen) = seen.lock() {
                seen.push(header);
            }
            Ok(())
        },
    )
    .await?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        vec![Some(json!("firefox(.*)")), Some(json!("chrome(.*)")), None],
        "the header route at each pause"
    );
    let spec = s
        .wait_spec(
            &virtual_services(),
            "rollouts-demo-vsvc",
            "no managed route",
            |spec| !http_route_names(spec).contains(&"set-header-1".to_string()),
        )
        .await?;
    assert_eq!(http_route_names(&spec)[0], "primary");
    Ok(())
}

/// Argo's mirror-route manifest: both mirror routes, first in `managedRoutes` order, then
/// one removed by a step without match, and none at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_mirror_routes() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let seen = std::sync::Mutex::new(Vec::new());
    run_argo_manifest(
        &s,
        "argo-rollouts/test/e2e/mirror-route/istio-mirror-host.yaml",
        async |s, _| {
            let spec = s
                .object(&virtual_services(), "rollouts-demo-vsvc")
                .await?
                .data["spec"]
                .clone();
            let mirrors: Vec<(String, Value, Value)> = spec["http"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r.get("mirror").is_some())
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["match"][0]["uri"]["prefix"].clone(),
                        r["mirrorPercentage"]["value"].clone(),
                    )
                })
                .collect();
            if let Ok(mut seen) = seen.lock() {
                seen.push((http_route_names(&spec), mirrors));
            }
            Ok(())
        },
    )
    .await?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[0].0,
        names(&["mirror-route-1", "mirror-route-2", "primary"])
    );
    assert_eq!(
        seen[0].1,
        vec![
            ("mirror-route-1".to_string(), json!("/"), json!(100)),
            ("mirror-route-2".to_string(), json!("/"), json!(80)),
        ]
    );
    assert_eq!(
        seen[1].1[0],
        ("mirror-route-1".to_string(), json!("/rewrite"), json!(100))
    );
    assert_eq!(seen[2].0, names(&["mirror-route-2", "primary"]));
    s.wait_spec(
        &virtual_services(),
        "rollouts-demo-vsvc",
        "only the user's route",
        |spec| http_route_names(spec) == names(&["primary"]),
    )
    .await?;
    Ok(())
}

/// Argo's SMI + NGINX manifest: two routers on one Rollout, both at the step's weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_smi_and_nginx_together() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    let path = "argo-rollouts/test/e2e/smi_ingress/rollout-smi-ingress-canary.yaml";
    let yaml = reference(path)?;
    s.env.apply_yaml(&yaml).await?;
    let name = "rollout-smi-ingress-canary";
    s.wait(name, "Healthy", healthy).await?;
    let ingresses: Api<Ingress> = Api::namespaced(s.client(), s.ns());
    let canary_ingress = format!("{name}-{name}-stable-canary");
    let split = "rollout-smi-ingress-canary-trafficsplit";
    let weights = async || {
        let ingress = ingresses.get_opt(&canary_ingress).await.ok().flatten()?;
        let nginx = ingress
            .metadata
            .annotations?
            .get("nginx.ingress.kubernetes.io/canary-weight")?
            .parse::<i64>()
            .ok()?;
        let split = s
            .dynamic(&traffic_splits())
            .get_opt(split)
            .await
            .ok()
            .flatten()?;
        let smi = split.data["spec"]["backends"][0]["weight"].as_i64()?;
        Some((nginx, smi))
    };
    assert_eq!(weights().await, Some((0, 0)));
    s.set_image(name, name, "nginx:1.20-alpine").await?;
    wait_for("both routers at 5", WAIT, || async {
        (weights().await == Some((5, 5))).then_some(())
    })
    .await?;
    s.wait(name, "Healthy on the new revision", |r| {
        healthy(r)
            && status_of(r).stable_rs == status_of(r).current_pod_hash
            && status_of(r).current_step_index == Some(4)
    })
    .await?;
    wait_for("both routers back at 0", WAIT, || async {
        (weights().await == Some((0, 0))).then_some(())
    })
    .await?;
    Ok(())
}

/// A user's edit of the route is undone by the router watch alone, mid-rollout and after the
/// update completed (then the route must stay all on stable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_edits_are_undone_at_once_mid_rollout_and_after_the_update() -> TestResult {
    let s = Scenario::start(&["gateway-api/gateway.networking.k8s.io_httproutes.yaml"]).await?;
    s.create_services("edit").await?;
    s.create_object(
        &http_routes(),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "edit-route"},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
                {"backendRefs": [{"name": "edit-stable", "port": 80, "weight": 100},
                                 {"name": "edit-canary", "port": 80, "weight": 0}]}]}
        }),
    )
    .await?;
    let canary = json!({
        "stableService": "edit-stable", "canaryService": "edit-canary",
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "edit-route"}}},
        "steps": [{"setWeight": 30}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("edit", 2, "demo:1", canary),
        )
        .await?;
    s.wait("edit", "Healthy", healthy).await?;
    let weights = |spec: &Value| gateway_weights(spec, "edit-stable", "edit-canary");
    let set_weights = |stable: i64, canary: i64| {
        move |spec: &mut Value| {
            spec["rules"][0]["backendRefs"][0]["weight"] = json!(stable);
            spec["rules"][0]["backendRefs"][1]["weight"] = json!(canary);
        }
    };

    s.set_image("edit", "app", "demo:2").await?;
    let paused = s.wait("edit", "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    s.wait_spec(&http_routes(), "edit-route", "70/30", |spec| {
        weights(spec) == vec![(70, 30)]
    })
    .await?;
    s.edit_spec(&http_routes(), "edit-route", set_weights(0, 100))
        .await?;
    s.restored(&http_routes(), "edit-route", "mid-rollout edit", |spec| {
        weights(spec) == vec![(70, 30)]
    })
    .await?;

    promote(&s.rollouts(), "edit").await?;
    // Healthy, and the final weights recorded: the controller has nothing left to write.
    s.wait("edit", "Healthy on the new revision, all on stable", |r| {
        let weights = status_of(r).canary.and_then(|c| c.weights);
        healthy(r)
            && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
            && weights.is_some_and(|w| {
                w.stable.weight == 100
                    && w.canary.weight == 0
                    && w.stable.pod_template_hash.as_deref() == Some(v2.as_str())
                    && w.verified != Some(false)
            })
    })
    .await?;
    s.wait_spec(&http_routes(), "edit-route", "100/0", |spec| {
        weights(spec) == vec![(100, 0)]
    })
    .await?;
    let before = s.rollouts().get("edit").await?.resource_version();
    s.edit_spec(&http_routes(), "edit-route", set_weights(50, 50))
        .await?;
    s.restored(
        &http_routes(),
        "edit-route",
        "edit after the update",
        |spec| weights(spec) == vec![(100, 0)],
    )
    .await?;
    assert_eq!(
        s.rollouts().get("edit").await?.resource_version(),
        before,
        "undoing the edit writes nothing to the Rollout"
    );
    Ok(())
}

/// SMI: a user's edit of the TrafficSplit mid-rollout is undone; abort puts all traffic back
/// on stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smi_user_edit_and_abort() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    s.create_services("split").await?;
    let canary = json!({
        "stableService": "split-stable", "canaryService": "split-canary",
        "trafficRouting": {"smi": {"rootService": "split"}},
        "steps": [{"setWeight": 40}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("split", 2, "demo:1", canary),
        )
        .await?;
    let first = s.wait("split", "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let weights = |spec: &Value| -> Vec<(String, i64)> {
        spec["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["service"].as_str().unwrap_or_default().to_string(),
                    b["weight"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let expect = |canary: i64, stable: i64| {
        vec![
            ("split-canary".to_string(), canary),
            ("split-stable".to_string(), stable),
        ]
    };
    s.set_image("split", "app", "demo:2").await?;
    s.wait("split", "paused at step 1", paused_at(1)).await?;
    // The TrafficSplit is named after the Rollout when trafficSplitName is not set.
    s.wait_spec(&traffic_splits(), "split", "40/60", |spec| {
        weights(spec) == expect(40, 60)
    })
    .await?;
    s.edit_spec(&traffic_splits(), "split", |spec| {
        spec["backends"][0]["weight"] = json!(90);
        spec["backends"][1]["weight"] = json!(10);
    })
    .await?;
    s.restored(&traffic_splits(), "split", "SMI edit", |spec| {
        weights(spec) == expect(40, 60)
    })
    .await?;

    abort(&s.rollouts(), "split").await?;
    s.wait("split", "aborted", aborted).await?;
    s.wait_spec(&traffic_splits(), "split", "all on stable", |spec| {
        weights(spec) == expect(0, 100)
    })
    .await?;
    assert_eq!(
        selected(&s, "split-canary").await.as_deref(),
        Some(v1.as_str()),
        "the canary Service is back on the stable pods"
    );
    Ok(())
}

/// Istio with HTTP and TCP routes: both carry the step's weight, a user's edit of the TCP
/// route is undone, abort moves both back to stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_http_and_tcp_routes_user_edit_and_abort() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    s.create_services("tcp").await?;
    let destinations = json!([
        {"destination": {"host": "tcp-stable"}, "weight": 100},
        {"destination": {"host": "tcp-canary"}, "weight": 0}
    ]);
    s.create_object(
        &virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": "tcp-vsvc"},
            "spec": {
                "hosts": ["tcp"],
                "http": [{"name": "primary", "route": destinations}],
                "tcp": [
                    {"match": [{"port": 3000}], "route": destinations},
                    {"match": [{"port": 4000}], "route": [{"destination": {"host": "other"}}]}
                ]
            }
        }),
    )
    .await?;
    let canary = json!({
        "stableService": "tcp-stable", "canaryService": "tcp-canary",
        "trafficRouting": {"istio": {"virtualService": {
            "name": "tcp-vsvc", "routes": ["primary"], "tcpRoutes": [{"port": 3000}]}}},
        "steps": [{"setWeight": 30}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("tcp", 2, "demo:1", canary),
        )
        .await?;
    s.wait("tcp", "Healthy", healthy).await?;
    let both = |spec: &Value| {
        (
            istio_weights(&spec["http"][0], "tcp-stable", "tcp-canary"),
            istio_weights(&spec["tcp"][0], "tcp-stable", "tcp-canary"),
        )
    };
    s.set_image("tcp", "app", "demo:2").await?;
    s.wait("tcp", "paused at step 1", paused_at(1)).await?;
    s.wait_spec(
        &virtual_services(),
        "tcp-vsvc",
        "http and tcp 70/30",
        |spec| both(spec) == (Some((70, 30)), Some((70, 30))),
    )
    .await?;
    s.edit_spec(&virtual_services(), "tcp-vsvc", |spec| {
        spec["tcp"][0]["route"][0]["weight"] = json!(10);
        spec["tcp"][0]["route"][1]["weight"] = json!(90);
    })
    .await?;
    let (spec, _) = s
        .restored(&virtual_services(), "tcp-vsvc", "tcp route edit", |spec| {
            both(spec) == (Some((70, 30)), Some((70, 30)))
        })
        .await?;
    assert_eq!(
        spec["tcp"][1],
        json!({"match": [{"port": 4000}], "route": [{"destination": {"host": "other"}}]}),
        "the user's other TCP route is untouched"
    );

    abort(&s.rollouts(), "tcp").await?;
    s.wait("tcp", "aborted", aborted).await?;
    s.wait_spec(&virtual_services(), "tcp-vsvc", "all on stable", |spec| {
        both(spec) == (Some((100, 0)), Some((100, 0)))
    })
    .await?;
    Ok(())
}

/// Istio subset split: a user's edit mid-rollout is undone; abort moves the weights back
/// to the stable subset before the canary is scaled down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_subset_user_edit_and_abort() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    s.create_services("sub").await?;
    s.create_object(
        &virtual_services(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": "sub-vsvc"},
            "spec": {"hosts": ["sub"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "sub", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "sub", "subset": "canary"}, "weight": 0}]}]}
        }),
    )
    .await?;
    s.create_object(
        &destination_rules(),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "sub-dr"},
            "spec": {"host": "sub", "subsets": [
                {"name": "stable", "labels": {"app": "sub"}},
                {"name": "canary", "labels": {"app": "sub"}}]}
        }),
    )
    .await?;
    let canary = json!({
        "trafficRouting": {"istio": {
            "virtualService": {"name": "sub-vsvc", "routes": ["primary"]},
            "destinationRule": {"name": "sub-dr", "canarySubsetName": "canary",
                                "stableSubsetName": "stable"}}},
        "steps": [{"setWeight": 50}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("sub", 2, "demo:1", canary),
        )
        .await?;
    let first = s.wait("sub", "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let weights = |spec: &Value| istio_weights(&spec["http"][0], "stable", "canary");
    s.set_image("sub", "app", "demo:2").await?;
    let paused = s.wait("sub", "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    s.wait_spec(&virtual_services(), "sub-vsvc", "50/50", |spec| {
        weights(spec) == Some((50, 50))
    })
    .await?;
    // The user points the canary subset at the stable pods: Ramp puts the hash back.
    s.edit_spec(&destination_rules(), "sub-dr", |spec| {
        spec["subsets"][1]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(v1.clone());
    })
    .await?;
    s.restored(
        &destination_rules(),
        "sub-dr",
        "DestinationRule edit",
        |spec| spec["subsets"][1]["labels"][POD_TEMPLATE_HASH_LABEL] == v2.as_str(),
    )
    .await?;
    s.edit_spec(&virtual_services(), "sub-vsvc", |spec| {
        spec["http"][0]["route"][0]["weight"] = json!(0);
        spec["http"][0]["route"][1]["weight"] = json!(100);
    })
    .await?;
    s.restored(
        &virtual_services(),
        "sub-vsvc",
        "VirtualService edit",
        |spec| weights(spec) == Some((50, 50)),
    )
    .await?;

    abort(&s.rollouts(), "sub").await?;
    s.wait("sub", "aborted", aborted).await?;
    s.wait_spec(&virtual_services(), "sub-vsvc", "all on stable", |spec| {
        weights(spec) == Some((100, 0))
    })
    .await?;
    Ok(())
}

/// NGINX with several stable Ingresses: one canary Ingress per stable Ingress, each at the
/// step's weight, each restored after an edit, all back at 0 when the update completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_several_stable_ingresses() -> TestResult {
    let s = Scenario::start(&[]).await?;
    s.create_services("multi").await?;
    let ingresses: Api<Ingress> = Api::namespaced(s.client(), s.ns());
    for (name, host) in [("multi-a", "a.example.com"), ("multi-b", "b.example.com")] {
        let ingress: Ingress = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {"rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "multi-stable", "port": {"number": 80}}}}]}}]}
        }))?;
        ingresses.create(&PostParams::default(), &ingress).await?;
    }
    let canary = json!({
        "stableService": "multi-stable", "canaryService": "multi-canary",
        "trafficRouting": {"nginx": {"stableIngresses": ["multi-a", "multi-b"]}},
        "steps": [{"setWeight": 40}, {"pause": {}}]
    });
    s.rollouts()
        .create(
            &PostParams::default(),
            &canary_rollout("multi", 2, "demo:1", canary),
        )
        .await?;
    s.wait("multi", "Healthy", healthy).await?;
    let canaries = ["multi-multi-a-canary", "multi-multi-b-canary"];
    let weight_of = |ingress: &Ingress| {
        ingress
            .annotations()
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .cloned()
    };
    let all_at = |weight: &'static str| {
        let ingresses = ingresses.clone();
        async move {
            wait_for(
                &format!("both canary Ingresses at {weight}"),
                WAIT,
                || async {
                    for name in canaries {
                        let ingress = ingresses.get_opt(name).await.ok().flatten()?;
                        if weight_of(&ingress).as_deref() != Some(weight) {
                            return None;
                        }
                    }
                    Some(())
                },
            )
            .await
        }
    };
    all_at("0").await?;
    s.set_image("multi", "app", "demo:2").await?;
    let paused = s.wait("multi", "paused at step 1", paused_at(1)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    all_at("40").await?;
    for (name, host) in [
        (canaries[0], "a.example.com"),
        (canaries[1], "b.example.com"),
    ] {
        let ingress = ingresses.get(name).await?;
        let rule = &ingress
            .spec
            .as_ref()
            .and_then(|s| s.rules.clone())
            .unwrap_or_default()[0];
        assert_eq!(rule.host.as_deref(), Some(host), "{name} keeps its host");
        let backend = rule.http.as_ref().map(|h| h.paths[0].backend.clone());
        assert_eq!(
            backend.and_then(|b| b.service).map(|s| s.name).as_deref(),
            Some("multi-canary"),
            "{name} sends to the canary Service"
        );
    }
    // Edit the second canary Ingress only.
    let mut edited = ingresses.get(canaries[1]).await?;
    edited.annotations_mut().insert(
        "nginx.ingress.kubernetes.io/canary-weight".into(),
        "100".into(),
    );
    ingresses
        .replace(canaries[1], &PostParams::default(), &edited)
        .await?;
    let began = std::time::Instant::now();
    all_at("40").await?;
    let took = began.elapsed();
    eprintln!("canary Ingress edit: restored after {took:?}");
    assert!(took < EDIT_UNDONE_WITHIN, "restored after {took:?}");

    promote(&s.rollouts(), "multi").await?;
    s.wait("multi", "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    all_at("0").await?;
    Ok(())
}

/// Argo's `istio-host-split-update-in-middle.yaml`: weight 0 with one canary pod, then a
/// second update in the middle replaces the first canary; traffic never leaves stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_update_in_middle() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let app = "istio-host-split";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-host-split-update-in-middle.yaml",
        )?)
        .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    s.set_image(app, app, "nginx:1.20-alpine").await?;
    let paused = s.wait(app, "paused at step 2", paused_at(2)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    wait_for("one v2 canary pod, v1 whole", WAIT, || async {
        let sizes = s.sizes(app).await;
        (sizes.get(&v2) == Some(&1) && sizes.get(&v1) == Some(&2)).then_some(())
    })
    .await?;
    let spec = s.object(&virtual_services(), vs).await?.data["spec"].clone();
    assert_eq!(
        istio_weights(&spec["http"][0], stable, canary),
        Some((100, 0))
    );

    s.set_image(app, app, "nginx:1.21-alpine").await?;
    let paused = s
        .wait(app, "paused at step 2 on a third revision", |r| {
            paused_at(2)(r)
                && status_of(r)
                    .current_pod_hash
                    .as_deref()
                    .is_some_and(|h| h != v1 && h != v2)
        })
        .await?;
    let v3 = status_of(&paused).current_pod_hash.unwrap_or_default();
    wait_for("one v3 canary pod, v2 gone, v1 whole", WAIT, || async {
        let sizes = s.sizes(app).await;
        (sizes.get(&v3) == Some(&1)
            && sizes.get(&v2).copied().unwrap_or(0) == 0
            && sizes.get(&v1) == Some(&2))
        .then_some(())
    })
    .await?;
    let spec = s.object(&virtual_services(), vs).await?.data["spec"].clone();
    assert_eq!(
        istio_weights(&spec["http"][0], stable, canary),
        Some((100, 0))
    );
    promote(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the third revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v3.as_str())
    })
    .await?;
    Ok(())
}

/// Argo's `istio-rollout-abort-delete-all-canary-pods.yaml`: setCanaryScale steps, abort at
/// the second pause moves traffic to stable and then removes every canary pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_abort_deletes_all_canary_pods() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let app = "istio-host-split";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-rollout-abort-delete-all-canary-pods.yaml",
        )?)
        .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    let weights = async || {
        let spec = s.object(&virtual_services(), vs).await.ok()?.data["spec"].clone();
        istio_weights(&spec["http"][0], stable, canary)
    };
    s.set_image(app, app, "nginx:1.20-alpine").await?;
    let paused = s.wait(app, "paused at step 2", paused_at(2)).await?;
    let v2 = status_of(&paused).current_pod_hash.unwrap_or_default();
    wait_for("2 canary pods at weight 20", WAIT, || async {
        let sizes = s.sizes(app).await;
        (sizes.get(&v2) == Some(&2) && sizes.get(&v1) == Some(&5)).then_some(())
    })
    .await?;
    assert_eq!(weights().await, Some((80, 20)));
    promote(&s.rollouts(), app).await?;
    s.wait(app, "paused at step 5", paused_at(5)).await?;
    wait_for("4 canary pods at weight 40", WAIT, || async {
        let sizes = s.sizes(app).await;
        (sizes.get(&v2) == Some(&4) && sizes.get(&v1) == Some(&5)).then_some(())
    })
    .await?;
    assert_eq!(weights().await, Some((60, 40)));

    abort(&s.rollouts(), app).await?;
    s.wait(app, "aborted", aborted).await?;
    wait_for("all traffic on stable", WAIT, || async {
        (weights().await == Some((100, 0))).then_some(())
    })
    .await?;
    wait_for("every canary pod deleted", WAIT, || async {
        let sizes = s.sizes(app).await;
        (sizes.get(&v2).copied().unwrap_or(0) == 0 && sizes.get(&v1) == Some(&5)).then_some(())
    })
    .await?;
    Ok(())
}

/// Argo's `smi/rollout-smi-experiment.yaml`, unchanged: at the experiment step the template's
/// Service gets its own 5 % in the TrafficSplit (the canary keeps 5 %, stable the rest) once
/// the template runs; promoted fully, the split is back to stable alone and the experiment's
/// backend is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smi_experiment_step_gives_the_template_its_weight() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    let app = "rollout-smi-experiment";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/smi/rollout-smi-experiment.yaml",
        )?)
        .await?;
    s.wait(app, "Healthy", healthy).await?;
    let split = "rollout-smi-experiment-trafficsplit";
    let (stable, canary) = (
        "rollout-smi-experiment-stable",
        "rollout-smi-experiment-canary",
    );
    let weights = |spec: &Value| -> BTreeMap<String, i64> {
        spec["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let weight = b["weight"]
                    .as_i64()
                    .or_else(|| b["weight"].as_str().and_then(|w| w.parse().ok()))
                    .unwrap_or(-1);
                (
                    b["service"].as_str().unwrap_or_default().to_string(),
                    weight,
                )
            })
            .collect()
    };

    s.set_image(app, app, "nginx:1.20-alpine").await?;
    let at_experiment = s
        .wait(app, "at the experiment step", |r| {
            status_of(r).current_step_index == Some(1)
                && status_of(r)
                    .canary
                    .and_then(|c| c.current_experiment)
                    .is_some()
        })
        .await?;
    let experiment = status_of(&at_experiment)
        .canary
        .and_then(|c| c.current_experiment)
        .unwrap_or_default();
    let spec = s
        .wait_spec(
            &traffic_splits(),
            split,
            "5/90/5 with the experiment",
            |spec| {
                let w = weights(spec);
                w.len() == 3 && w.get(canary) == Some(&5) && w.get(stable) == Some(&90)
            },
        )
        .await?;
    let (service, weight) = weights(&spec)
        .into_iter()
        .find(|(name, _)| name != stable && name != canary)
        .ok_or("an experiment backend")?;
    assert_eq!(weight, 5, "the template's weight");
    assert!(
        service.starts_with(&experiment),
        "the backend is the experiment's Service: {service} (experiment {experiment})"
    );

    ramp_e2e::fixtures::rollouts::promote_full(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the new revision", healthy).await?;
    s.wait_spec(&traffic_splits(), split, "all traffic on stable", |spec| {
        let w = weights(spec);
        w.len() == 2 && w.get(stable) == Some(&100) && w.get(canary) == Some(&0)
    })
    .await?;
    Ok(())
}
