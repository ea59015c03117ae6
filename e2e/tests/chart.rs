//! The Helm chart `charts/ramp`, through Helm's own engine (`e2e/scripts/helm_chart.py`, PyPI
//! helm-python-sdk):
//!
//! - its CRDs are the generated ones (`crds/`);
//! - `helm lint --strict` finds nothing, for the default values and for every other value set;
//! - the values schema and the templates refuse what cannot work, with messages that say why;
//! - the default render is locked down (non-root, read-only root filesystem, no capabilities,
//!   no privilege escalation) and its RBAC has no wildcard and no more than the code needs;
//! - every rendered manifest of every value set applies to the test cluster with
//!   `kubectl apply --server-side`;
//! - and the controller runs on nothing but the chart's RBAC: the real `ramp-controller`
//!   binary, started with the Deployment's own arguments and the chart's ServiceAccount token,
//!   takes a Rollout through a Job analysis (namespace scope) and syncs an Application from
//!   Git (cluster scope with GitOps) without a single forbidden request.

mod plugin_support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use plugin_support::{ControllerProcess, python, workspace};
use ramp_controller::api::{AnalysisTemplate, Rollout};
use ramp_controller::gitops::Application;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::git::{GitDaemon, GitRepo};
use ramp_e2e::fixtures::gitops::{application, install_crds, summary, wait_for};
use ramp_e2e::fixtures::rollouts::{canary_rollout, healthy, service, wait_rollout};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(120);

fn chart() -> String {
    workspace()
        .join("charts/ramp")
        .to_string_lossy()
        .into_owned()
}

/// Value sets the chart must lint, render and apply with.
fn value_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "namespaced",
            json!({"scope": "Namespace", "replicas": 1, "leaderElection": {"enabled": false},
                   "instanceId": "blue", "controller": {"analysis": false, "logJson": false}}),
        ),
        (
            "gitops",
            json!({"gitops": {"enabled": true, "pollInterval": "30s", "createNamespaces": false,
                              "webhookSecret": {"existingSecret": "ramp-webhook"},
                              "rootApplication": {"enabled": true, "repoURL": "git://git.example/apps.git",
                                                  "path": "clusters/dev", "syncOptions": ["CreateNamespace=true"]}}}),
        ),
        (
            "monitoring",
            json!({"metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
                   "podDisruptionBudget": {"enabled": true},
                   "controller": {"prometheusAddress": "http://prometheus.monitoring:9090", "rolloutThreads": 4, "extraArgs": ["--instance-id=green"]},
                   "dashboards": {"annotations": {"grafana_folder": "Ramp"}},
                   "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}}),
        ),
        (
            "minimal",
            json!({"replicas": 1, "leaderElection": {"enabled": false}, "rbac": {"create": false},
                   "serviceAccount": {"create": false, "name": "ramp-existing"},
                   "metrics": {"service": {"enabled": false}}, "dashboards": {"enabled": false}}),
        ),
    ]
}

/// A rendered document: where it came from and the object.
struct Document {
    source: String,
    yaml: String,
    object: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// The chart rendered with `values` (offline, or as a server-side dry run against the
/// cluster of `kubeconfig`); Err carries the template error.
fn render(
    values: &Value,
    release: &str,
    namespace: &str,
    kubeconfig: Option<&std::path::Path>,
) -> Result<(Vec<Document>, String), String> {
    let values = values.to_string();
    let chart = chart();
    let mut args = vec!["render", &chart, &values, release, namespace];
    let kubeconfig = kubeconfig.map(|k| k.to_string_lossy().into_owned());
    if let Some(path) = &kubeconfig {
        args.extend(["--kubeconfig", path]);
    }
    let out: Value =
        serde_json::from_str(&python("helm_chart.py", &args)?).map_err(|e| e.to_string())?;
    if let Some(error) = out["error"].as_str() {
        return Err(error.to_string());
    }
    let mut documents = Vec::new();
    for document in out["documents"].as_array().into_iter().flatten() {
        let yaml = document["yaml"].as_str().unwrap_or_default().to_string();
        let object: Value = serde_saphyr::from_str(&yaml)
            .map_err(|e| format!("{}: {e}\n{yaml}", document["source"]))?;
        documents.push(Document {
            source: document["source"].as_str().unwrap_or_default().to_string(),
            yaml,
            object,
        });
    }
    Ok((
        documents,
        out["notes"].as_str().unwrap_or_default().to_string(),
    ))
}

fn find<'a>(documents: &'a [Document], kind: &str) -> Vec<&'a Document> {
    documents.iter().filter(|d| d.kind() == kind).collect()
}

#[test]
fn chart_crds_are_the_generated_crds() -> TestResult {
    let root = workspace();
    let mut generated: Vec<String> = std::fs::read_dir(root.join("crds"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    generated.sort();
    assert!(generated.len() >= 6, "{generated:?}");
    let mut in_chart: Vec<String> = std::fs::read_dir(root.join("charts/ramp/crds"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    in_chart.sort();
    // The Application CRD is a template of the chart (installed only with GitOps on).
    let expected: Vec<String> = generated
        .iter()
        .filter(|n| *n != "applications.yaml")
        .cloned()
        .collect();
    assert_eq!(
        in_chart, expected,
        "charts/ramp/crds/ must hold every generated CRD but applications.yaml"
    );
    for name in &generated {
        let source = std::fs::read_to_string(root.join("crds").join(name))?;
        let copy = if name == "applications.yaml" {
            root.join("charts/ramp/files/applications.yaml")
        } else {
            root.join("charts/ramp/crds").join(name)
        };
        assert_eq!(
            std::fs::read_to_string(&copy)?,
            source,
            "{} differs from crds/{name}: copy it again (cp crds/{name} {})",
            copy.display(),
            copy.display()
        );
    }
    Ok(())
}

#[test]
fn lint_and_render_find_nothing_with_any_value_set() -> TestResult {
    let chart = chart();
    for (name, values) in value_sets() {
        let report: Value = serde_json::from_str(&python(
            "helm_chart.py",
            &["lint", &chart, &values.to_string()],
        )?)?;
        let messages = report["messages"].as_array().cloned().unwrap_or_default();
        let errors = report["errors"].as_array().cloned().unwrap_or_default();
        assert!(
            messages.is_empty() && errors.is_empty(),
            "helm lint --strict with the {name} values:\n{report:#}"
        );
        // Lint does not parse what it renders; every document must be strict YAML (no
        // duplicate keys) with a kind and a name.
        let (documents, _) =
            render(&values, "ramp", "ramp-system", None).map_err(|e| format!("{name}: {e}"))?;
        for document in &documents {
            assert!(
                !document.kind().is_empty() && !document.name().is_empty(),
                "{name}: {}",
                document.source
            );
        }
    }
    Ok(())
}

#[test]
fn the_controller_accepts_the_arguments_of_every_value_set() -> TestResult {
    for (name, values) in value_sets() {
        let (documents, _) =
            render(&values, "ramp", "ramp-system", None).map_err(|e| format!("{name}: {e}"))?;
        let deployment = &find(&documents, "Deployment")[0].object;
        let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        // No cluster to find: the run stops right after the arguments were accepted.
        let output = std::process::Command::new(plugin_support::ramp_binary("ramp-controller"))
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: ramp-controller {}\n{stderr}",
            args.join(" ")
        );
        assert!(
            stderr.contains("finding the cluster"),
            "{name}: ramp-controller {}\n{stderr}",
            args.join(" ")
        );
    }
    Ok(())
}

#[test]
fn values_that_cannot_work_are_refused_with_a_reason() -> TestResult {
    let chart = chart();
    let schema = |values: Value| -> Result<Value, String> {
        serde_json::from_str(&python(
            "helm_chart.py",
            &["schema", &chart, &values.to_string()],
        )?)
        .map_err(|e| e.to_string())
    };
    for (name, values) in value_sets() {
        assert_eq!(schema(values)?, json!({"ok": true}), "the {name} values");
    }
    for (values, reason) in [
        (
            json!({"scope": "Everywhere"}),
            "value must be one of 'Cluster', 'Namespace'",
        ),
        (
            json!({"replica": 2}),
            "additional properties 'replica' not allowed",
        ),
        (json!({"replicas": -1}), "/replicas"),
        (
            json!({"gitops": {"pollInterval": "soon"}}),
            "/gitops/pollInterval",
        ),
        (
            json!({"securityContext": {"privileged": true}}),
            "/securityContext/privileged",
        ),
        (
            json!({"controller": {"prometheusAddress": "prometheus:9090"}}),
            "/controller/prometheusAddress",
        ),
    ] {
        let answer = schema(values.clone())?;
        assert_eq!(answer["ok"], json!(false), "{values} was accepted");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{values}: {answer}"
        );
    }
    for (values, reason) in [
        (
            json!({"replicas": 3, "leaderElection": {"enabled": false}}),
            "replicas > 1 needs leaderElection.enabled",
        ),
        (
            json!({"scope": "Namespace", "gitops": {"enabled": true}}),
            "gitops.enabled needs scope: Cluster",
        ),
        (
            json!({"gitops": {"enabled": true, "rootApplication": {"enabled": true, "path": "apps"}}}),
            "gitops.rootApplication.repoURL is required",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ] {
        match render(&values, "ramp", "ramp-system", None) {
            Ok(_) => panic!("{values} rendered"),
            Err(error) => assert!(error.contains(reason), "{values}: {error}"),
        }
    }
    Ok(())
}

#[test]
fn defaults_are_locked_down_and_least_privilege() -> TestResult {
    let (documents, notes) = render(&json!({}), "ramp", "ramp-system", None)?;
    assert!(
        notes.contains("Ramp 0.1.0 is installed as release ramp in namespace ramp-system"),
        "{notes}"
    );

    let deployment = &find(&documents, "Deployment")[0].object;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], json!(2));
    let args: Vec<&str> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "run",
        "--leader-elect",
        "--metrics-addr=0.0.0.0:8090",
        "--health-addr=0.0.0.0:8080",
    ] {
        assert!(args.contains(&wanted), "{wanted} missing from {args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--namespace") || *a == "--gitops"),
        "{args:?}"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string()
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], json!(true));
    assert_eq!(security["readOnlyRootFilesystem"], json!(true));
    assert_eq!(security["allowPrivilegeEscalation"], json!(false));
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["affinity"]["podAntiAffinity"].is_object(),
        "two replicas are spread over nodes"
    );
    // The only writable place is /tmp (Git caches), an emptyDir.
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}])
    );

    // RBAC: no wildcards, no verbs that hand out power, Secrets only read by name.
    let roles: Vec<&Document> = documents
        .iter()
        .filter(|d| d.kind() == "ClusterRole" || d.kind() == "Role")
        .collect();
    assert_eq!(
        roles.len(),
        2,
        "the controller's ClusterRole and the leader-election Role"
    );
    let mut granted = BTreeSet::new();
    for role in &roles {
        for rule in role.object["rules"].as_array().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !list(field).iter().any(|v| v == "*"),
                    "{}: wildcard in {rule}",
                    role.name()
                );
            }
            for verb in list("verbs") {
                assert!(
                    ![
                        "escalate",
                        "bind",
                        "impersonate",
                        "update",
                        "deletecollection"
                    ]
                    .contains(&verb.as_str()),
                    "{}: {verb} in {rule}",
                    role.name()
                );
                for resource in list("resources") {
                    granted.insert(format!("{resource}:{verb}"));
                }
            }
        }
    }
    assert!(
        granted.contains("secrets:get")
            && !granted.contains("secrets:list")
            && !granted.contains("secrets:watch")
    );
    assert!(
        !granted.iter().any(|g| g.starts_with("applications")),
        "no GitOps rights without GitOps: {granted:?}"
    );
    let lease_rules = &find(&documents, "Role")[0].object["rules"];
    assert_eq!(
        lease_rules[1]["resourceNames"],
        json!(["ramp-controller-lock"])
    );

    // Dashboards for Grafana's sidecar, byte for byte the files.
    let dashboards = find(&documents, "ConfigMap");
    assert_eq!(dashboards.len(), 3);
    for dashboard in dashboards {
        assert_eq!(
            dashboard.object["metadata"]["labels"]["grafana_dashboard"],
            "1"
        );
        let data = dashboard.object["data"].as_object().ok_or("no data")?;
        let (key, json) = data.iter().next().ok_or("empty ConfigMap")?;
        let file = key.trim_start_matches("ramp-");
        let on_disk =
            std::fs::read_to_string(workspace().join("charts/ramp/dashboards").join(file))?;
        assert_eq!(
            json.as_str().map(str::trim_end),
            Some(on_disk.trim_end()),
            "{}",
            dashboard.source
        );
    }
    Ok(())
}

/// Cluster-scoped objects a test applied, deleted again when it ends.
struct ClusterObjects {
    kubeconfig: std::path::PathBuf,
    names: Vec<(String, String)>,
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for (kind, name) in &self.names {
            let _ = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["delete", kind, name, "--ignore-not-found", "--wait=false"])
                .output();
        }
    }
}

const CLUSTER_SCOPED: [&str; 3] = ["ClusterRole", "ClusterRoleBinding", "Namespace"];

/// Applies `documents` with `kubectl apply --server-side`: CustomResourceDefinitions first
/// (and waits for them), then everything else. Cluster-scoped objects are recorded in `created`
/// for deletion (CRDs are shared by every test and stay).
async fn apply(
    env: &TestEnv,
    documents: &[Document],
    created: &mut ClusterObjects,
) -> Result<(), String> {
    let (crds, rest): (Vec<&Document>, Vec<&Document>) = documents
        .iter()
        .partition(|d| d.kind() == "CustomResourceDefinition");
    for document in &rest {
        if CLUSTER_SCOPED.contains(&document.kind()) {
            created
                .names
                .push((document.kind().to_lowercase(), document.name().to_string()));
        }
    }
    for batch in [crds, rest] {
        if batch.is_empty() {
            continue;
        }
        let stream: String = batch.iter().map(|d| format!("---\n{}", d.yaml)).collect();
        env.kubectl_with_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=ramp-chart-test",
                "-f",
                "-",
            ],
            &stream,
        )
        .await
        .map_err(|e| e.to_string())?;
        let names: Vec<String> = batch
            .iter()
            .filter(|d| d.kind() == "CustomResourceDefinition")
            .map(|d| format!("crd/{}", d.name()))
            .collect();
        if !names.is_empty() {
            let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
            args.extend(names.iter().map(String::as_str));
            env.run_kubectl(&args).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The chart's CRDs (`crds/`, which Helm installs before the templates).
fn chart_crds() -> Result<Vec<Document>, Box<dyn std::error::Error>> {
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(workspace().join("charts/ramp/crds"))? {
        let path = entry?.path();
        let yaml = std::fs::read_to_string(&path)?;
        let object: Value = serde_saphyr::from_str(&yaml)?;
        documents.push(Document {
            source: path.display().to_string(),
            yaml,
            object,
        });
    }
    Ok(documents)
}

/// A minimal ServiceMonitor CRD (prometheus-operator's kind, schema left open), so the
/// ServiceMonitor the chart renders can be applied to a cluster without the operator.
const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

#[tokio::test]
async fn every_value_set_applies_server_side() -> TestResult {
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    let mut created = ClusterObjects {
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        names: Vec::new(),
    };
    let service_monitor: Value = serde_saphyr::from_str(SERVICE_MONITOR_CRD)?;
    apply(
        &env,
        &[Document {
            source: "ServiceMonitor CRD".into(),
            yaml: SERVICE_MONITOR_CRD.into(),
            object: service_monitor,
        }],
        &mut created,
    )
    .await?;
    apply(&env, &chart_crds()?, &mut created).await?;
    let mut kinds = BTreeSet::new();
    for (name, values) in value_sets() {
        // One release per value set, side by side in the test namespace.
        let release = format!("ramp-{name}");
        let (documents, _) = render(&values, &release, &ns, Some(env.kubeconfig_path()))
            .map_err(|e| format!("rendering the {name} values: {e}"))?;
        assert!(!documents.is_empty(), "{name}: nothing rendered");
        kinds.extend(documents.iter().map(|d| d.kind().to_string()));
        if name == "monitoring" {
            let budget = &find(&documents, "PodDisruptionBudget")[0].object;
            let version = env.client().apiserver_version().await?;
            if version
                .minor
                .trim_end_matches('+')
                .parse::<u32>()
                .unwrap_or(0)
                < 21
            {
                assert_eq!(
                    budget["apiVersion"], "policy/v1beta1",
                    "a 1.20 cluster only serves policy/v1beta1"
                );
            }
        }
        apply(&env, &documents, &mut created)
            .await
            .map_err(|e| format!("applying the {name} values: {e}"))?;
    }
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "ConfigMap",
        "Application",
    ] {
        assert!(
            kinds.contains(kind),
            "no value set rendered a {kind}: {kinds:?}"
        );
    }
    // What was applied is there.
    let deployments = env
        .run_kubectl(&["get", "deployments", "-o", "name"])
        .await?;
    assert_eq!(
        deployments.lines().count(),
        value_sets().len(),
        "{deployments}"
    );
    Ok(())
}

/// The Deployment's container arguments, without `run` and the listen addresses (the test
/// process picks loopback ports), plus `extra`.
fn controller_args(documents: &[Document], extra: &[String]) -> Vec<String> {
    let deployment = &find(documents, "Deployment")[0].object;
    let mut args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .filter(|a| {
            a != "run" && !a.starts_with("--metrics-addr") && !a.starts_with("--health-addr")
        })
        .collect();
    args.extend(extra.iter().cloned());
    args
}

/// Log lines that show the API refusing the controller something.
fn refusals(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            lower.contains("forbidden") || lower.contains("\"code\":403") || lower.contains(" 403")
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn namespaced_install_runs_the_controller_on_its_own_rbac() -> TestResult {
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    let client = env.client();
    let mut created = ClusterObjects {
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        names: Vec::new(),
    };
    apply(&env, &chart_crds()?, &mut created).await?;
    let values = json!({"scope": "Namespace", "replicas": 1, "dashboards": {"enabled": false}});
    let (documents, _) = render(&values, "ramp", &ns, Some(env.kubeconfig_path()))?;
    apply(&env, &documents, &mut created).await?;

    let args = controller_args(&documents, &[]);
    assert!(
        args.contains(&format!("--namespace={ns}")) && args.contains(&"--leader-elect".to_string()),
        "{args:?}"
    );
    let token = env.service_account_token("ramp").await?;
    let kubeconfig = env.kubeconfig_with_token(&token).await?;
    let mut controller = ControllerProcess::start(
        &kubeconfig,
        &args,
        &env.scratch_dir().join("controller.log"),
    )?;
    controller.ready(WAIT).await?;

    // A canary with Services and an analysis step whose metric is a Job.
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "smoke"},
        "spec": {"metrics": [{"name": "smoke-test", "provider": {"job": {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "check", "image": "busybox:1.36", "command": ["sh", "-c", "exit 0"]}]}}}}}}]}
    }))?;
    Api::<AnalysisTemplate>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &template)
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .create(&PostParams::default(), &service("web-stable", "web"))
        .await?;
    services
        .create(&PostParams::default(), &service("web-canary", "web"))
        .await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let canary = json!({"stableService": "web-stable", "canaryService": "web-canary",
                        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}]}}]});
    rollouts
        .create(
            &PostParams::default(),
            &canary_rollout("web", 2, "shop/web:1", canary),
        )
        .await?;
    wait_rollout(&rollouts, "web", "Healthy", WAIT, healthy)
        .await
        .map_err(|e| format!("{e}\n{}", controller.log_text()))?;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/web:2"}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(image))
        .await?;
    wait_rollout(
        &rollouts,
        "web",
        "Healthy on the new version after the analysis",
        WAIT,
        |r| {
            let status = r.status.as_ref();
            healthy(r)
                && status.and_then(|s| s.current_step_index) == Some(2)
                && status.and_then(|s| s.stable_rs.as_ref())
                    == status.and_then(|s| s.current_pod_hash.as_ref())
        },
    )
    .await
    .map_err(|e| format!("{e}\n{}", controller.log_text()))?;

    let runs = env
        .run_kubectl(&[
            "get",
            "analysisruns",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .await?;
    assert!(
        runs.split_whitespace().any(|p| p == "Successful"),
        "the step's AnalysisRun: {runs}"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert!(
        events.items.iter().any(|e| e
            .reporting_controller
            .as_deref()
            .is_some_and(|c| c.contains("ramp"))),
        "the controller recorded Events"
    );
    let lease = Api::<Lease>::namespaced(client, &ns)
        .get("ramp-controller-lock")
        .await?;
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "the leader Lease is held"
    );
    let log = controller.log_text();
    assert_eq!(
        refusals(&log),
        Vec::<String>::new(),
        "the chart's Role is missing something:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_install_with_gitops_runs_the_controller_on_its_own_rbac() -> TestResult {
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    let client = env.client();
    let mut created = ClusterObjects {
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        names: Vec::new(),
    };
    install_crds(&client, &["applications.argoproj.io"]).await?;
    apply(&env, &chart_crds()?, &mut created).await?;
    let values = json!({"gitops": {"enabled": true, "pollInterval": "5s"}, "dashboards": {"enabled": false}});
    let (documents, _) = render(&values, "ramp", &ns, Some(env.kubeconfig_path()))?;
    apply(&env, &documents, &mut created).await?;

    // Cluster-wide rights, but this test's namespace only: other tests share the cluster.
    let args = controller_args(&documents, &[format!("--namespace={ns}")]);
    assert!(args.contains(&"--gitops".to_string()), "{args:?}");
    let token = env.service_account_token("ramp").await?;
    let kubeconfig = env.kubeconfig_with_token(&token).await?;
    let mut controller = ControllerProcess::start(
        &kubeconfig,
        &args,
        &env.scratch_dir().join("controller.log"),
    )?;
    controller.ready(WAIT).await?;

    let repo = GitRepo::new()?;
    repo.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n",
    )?;
    let rollout = canary_rollout(
        "web",
        2,
        "shop/web:1",
        json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}),
    );
    repo.write("app/rollout.yaml", &serde_saphyr::to_string(&rollout)?)?;
    repo.commit("web and its settings")?;
    let daemon = GitDaemon::serve(&repo)?;
    let apps: Api<Application> = Api::namespaced(client.clone(), &ns);
    apps.create(
        &PostParams::default(),
        &application(
            "web",
            &ns,
            &daemon.url(),
            "app",
            json!({"prune": true, "selfHeal": true}),
        ),
    )
    .await?;
    wait_for("Application web Synced and Healthy", WAIT, || async {
        let app = apps.get_opt("web").await.ok().flatten()?;
        let (sync, _, health) = summary(&app);
        (sync == "Synced" && health == "Healthy").then_some(())
    })
    .await
    .map_err(|e| format!("{e}\n{}", controller.log_text()))?;
    let rollouts: Api<Rollout> = Api::namespaced(client, &ns);
    wait_rollout(&rollouts, "web", "Healthy", WAIT, healthy).await?;
    let log = controller.log_text();
    assert_eq!(
        refusals(&log),
        Vec::<String>::new(),
        "the chart's ClusterRoles are missing something:\n{log}"
    );
    Ok(())
}
