//! The demo app as it lives in the playground's Git repository: an app-of-apps root, the
//! `demo` child Application, two Services, a replica-based canary Rollout and the
//! AnalysisTemplate judging the canary's error rate in Prometheus.
//!
//! ```text
//!   apps/demo.yaml        Application demo ──▶ path demo/
//!   demo/services.yaml    Services demo-stable, demo-canary
//!   demo/analysis.yaml    AnalysisTemplate error-rate (Prometheus, failureLimit 1)
//!   demo/rollout.yaml     Rollout demo: setWeight 20, pause 5s, analysis, setWeight 50, pause 5s
//! ```
//!
//! A version is an image tag plus the error rate its demo process answers with, carried in
//! the pod template's `DEMO_ERROR_RATE` variable, so what a commit deploys says in Git how
//! it behaves.

/// Name of the Rollout, its pods' `app` label and the child Application.
pub const APP: &str = "demo";
/// The root Application (app of apps), created by the playground from outside Git.
pub const ROOT_APP: &str = "root";
/// The environment variable holding a version's error rate.
pub const ERROR_RATE_ENV: &str = "DEMO_ERROR_RATE";
/// Image repository of the demo app; the tag is the version.
pub const IMAGE: &str = "ramp-demo";
/// Replicas of the Rollout.
pub const REPLICAS: i32 = 5;

/// Paths of the repository's files.
pub const CHILD_APP_PATH: &str = "apps/demo.yaml";
pub const SERVICES_PATH: &str = "demo/services.yaml";
pub const ANALYSIS_PATH: &str = "demo/analysis.yaml";
pub const ROLLOUT_PATH: &str = "demo/rollout.yaml";

/// A version of the demo app.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Version {
    pub tag: &'static str,
    /// Share of requests its processes answer 500.
    pub error_rate: f64,
}

/// The version deployed first.
pub const FIRST: Version = Version {
    tag: "1.0",
    error_rate: 0.0,
};
/// A healthy update.
pub const HEALTHY: Version = Version {
    tag: "2.0",
    error_rate: 0.0,
};
/// A faulty update: one request in four fails.
pub const FAULTY: Version = Version {
    tag: "3.0",
    error_rate: 0.25,
};

/// The error rate the analysis tolerates.
pub const MAX_ERROR_RATE: f64 = 0.05;

/// The child Application deploying `demo/` into `namespace` from `repo_url`.
pub fn child_application(namespace: &str, repo_url: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {APP}
  namespace: {namespace}
spec:
  project: default
  source:
    repoURL: {repo_url}
    targetRevision: HEAD
    path: {APP}
  destination:
    server: https://kubernetes.default.svc
    namespace: {namespace}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
"
    )
}

/// The stable and canary Services the Rollout points at its ReplicaSets.
pub fn services() -> String {
    ["stable", "canary"]
        .iter()
        .map(|role| {
            format!(
                "apiVersion: v1
kind: Service
metadata:
  name: {APP}-{role}
spec:
  selector:
    app: {APP}
  ports:
  - port: 80
    targetPort: 8080
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// PromQL for the share of 5xx answers of the pods of one ReplicaSet (by pod-template hash,
/// the label the playground gives each demo process's scrape target), over 5 s.
pub fn error_rate_query(hash: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{app=\"{APP}\",rollouts_pod_template_hash=\"{hash}\",status=~\"5..\"}}[5s])) / \
         sum(rate(http_requests_total{{app=\"{APP}\",rollouts_pod_template_hash=\"{hash}\"}}[5s]))"
    )
}

/// The AnalysisTemplate: the canary's error rate, every 2 s, 4 times; two failures abort.
pub fn analysis_template() -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
  annotations:
    # Before the Rollout that names it.
    argocd.argoproj.io/sync-wave: \"-1\"
spec:
  args:
  - name: canary-hash
  metrics:
  - name: error-rate
    interval: 2s
    count: 4
    failureLimit: 1
    successCondition: len(result) > 0 && result[0] < {MAX_ERROR_RATE}
    provider:
      prometheus:
        query: '{query}'
",
        query = error_rate_query("{{args.canary-hash}}")
    )
}

/// The Rollout running `version`.
pub fn rollout(version: Version) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {APP}
spec:
  replicas: {REPLICAS}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      app: {APP}
  template:
    metadata:
      labels:
        app: {APP}
    spec:
      containers:
      - name: {APP}
        image: {IMAGE}:{tag}
        env:
        - name: {ERROR_RATE_ENV}
          value: \"{rate}\"
  strategy:
    canary:
      stableService: {APP}-stable
      canaryService: {APP}-canary
      steps:
      - setWeight: 20
      - pause: {{duration: 5s}}
      - analysis:
          templates:
          - templateName: error-rate
          args:
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
      - setWeight: 50
      - pause: {{duration: 5s}}
",
        tag = version.tag,
        rate = version.error_rate,
    )
}

/// Number of canary steps in [`rollout`].
pub const STEPS: i32 = 5;

#[cfg(test)]
mod tests {
    use ramp_analysis::api::AnalysisTemplate;
    use ramp_controller::api::Rollout;
    use ramp_controller::gitops::Application;

    use super::*;

    #[test]
    fn manifests_parse_as_their_kinds() {
        let rollout: Rollout = serde_saphyr::from_str(&rollout(FAULTY)).expect("Rollout");
        let template = rollout.spec.template.expect("template");
        let container = &template.spec.expect("pod spec").containers[0];
        assert_eq!(container.image.as_deref(), Some("ramp-demo:3.0"));
        let env = container.env.as_ref().expect("env");
        assert_eq!(env[0].name, ERROR_RATE_ENV);
        assert_eq!(env[0].value.as_deref(), Some("0.25"));
        let steps = rollout
            .spec
            .strategy
            .and_then(|s| s.canary)
            .and_then(|c| c.steps);
        assert_eq!(steps.map(|s| s.len()), Some(STEPS as usize));

        let template: AnalysisTemplate =
            serde_saphyr::from_str(&analysis_template()).expect("AnalysisTemplate");
        let query = template.spec.metrics.as_ref().expect("metrics")[0]
            .provider
            .prometheus
            .as_ref()
            .and_then(|p| p.query.clone())
            .expect("query");
        assert!(query.contains("rollouts_pod_template_hash=\"{{args.canary-hash}}\""));

        let app: Application =
            serde_saphyr::from_str(&child_application("playground", "git://h/repo"))
                .expect("Application");
        assert_eq!(
            app.spec.source.as_ref().and_then(|s| s.path.as_deref()),
            Some("demo")
        );

        for doc in services().split("---\n") {
            let service: k8s_openapi::api::core::v1::Service =
                serde_saphyr::from_str(doc).expect("Service");
            assert!(service.metadata.name.expect("name").starts_with("demo-"));
        }
    }
}
