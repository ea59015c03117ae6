//! `kubectl ramp` against the test cluster, without a controller: each mutating command must
//! write what Argo's plugin writes, where it writes it (status subresource or object), and
//! the read commands must show and explain what is there. Status is set by the tests, as a
//! controller would, so every case is deterministic.
//!
//! The plugin talks to the API server through the fault proxy (no faults), whose request log
//! shows which endpoint each write went to.

mod plugin_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use plugin_support::Plugin;
use ramp_controller::api::{AnalysisRun, Rollout};
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::faults::{FaultProxy, FaultSpec};
use ramp_e2e::fixtures::gitops::install_crds;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CRDS: [&str; 2] = ["rollouts.argoproj.io", "analysisruns.argoproj.io"];

/// A namespace with the CRDs, and the plugin pointed at it through a recording proxy.
struct Setup {
    env: TestEnv,
    proxy: FaultProxy,
    plugin: Plugin,
}

impl Setup {
    async fn new() -> Result<Setup, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_crds(&env.client(), &CRDS).await?;
        let upstream =
            ramp_e2e::cluster::kubeconfig::config_from_file(env.kubeconfig_path()).await?;
        let proxy = FaultProxy::start(upstream, FaultSpec::default()).await?;
        let kubeconfig = env.scratch_dir().join("proxy-kubeconfig");
        proxy.write_kubeconfig(&kubeconfig, None)?;
        let plugin = Plugin::new(&kubeconfig, env.namespace());
        Ok(Setup { env, proxy, plugin })
    }

    fn client(&self) -> Client {
        self.env.client()
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client(), self.env.namespace())
    }

    /// Creates Rollout `name` (canary: setWeight 20, pause, setWeight 50, pause 10s) and gives it
    /// `status`, as a controller would.
    async fn rollout(&self, name: &str, status: Value) -> Result<Rollout, kube::Error> {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"initContainers": [{"name": "migrate", "image": "shop/migrate:1"}],
                                      "containers": [{"name": "web", "image": "shop/web:2"},
                                                     {"name": "proxy", "image": "shop/proxy:1"}]}},
                "strategy": {"canary": {"steps": [
                    {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10s"}}]}}
            }
        }))
        .expect("a valid Rollout");
        let created = self
            .rollouts()
            .create(&PostParams::default(), &rollout)
            .await?;
        self.set_status(name, status).await?;
        Ok(created)
    }

    async fn set_status(&self, name: &str, status: Value) -> Result<Rollout, kube::Error> {
        self.rollouts()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
    }

    async fn get(&self, name: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(serde_json::to_value(self.rollouts().get(name).await?)?)
    }

    /// `METHOD path` of every write through the proxy since the last call.
    fn writes(&self) -> Vec<String> {
        let writes = self
            .proxy
            .requests()
            .into_iter()
            .filter(|r| r.is_write())
            .map(|r| {
                format!(
                    "{} {}",
                    r.method,
                    r.path.split('?').next().unwrap_or_default()
                )
            })
            .collect();
        self.proxy.clear_requests();
        writes
    }

    fn path(&self, name: &str) -> String {
        format!(
            "/apis/argoproj.io/v1alpha1/namespaces/{}/rollouts/{name}",
            self.env.namespace()
        )
    }
}

fn paused_status() -> Value {
    json!({
        "observedGeneration": "1", "currentStepIndex": 1, "stableRS": "old", "currentPodHash": "new",
        "controllerPause": true, "phase": "Paused", "message": "CanaryPauseStep",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2024-05-01T10:00:00Z"}]
    })
}

#[tokio::test]
async fn promote_clears_the_pause_through_the_status_subresource() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("web", paused_status()).await?;
    s.rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await?;
    s.writes();

    let out = s.plugin.ok(&["promote", "web"]).await;
    assert_eq!(out, format!("rollout {}/web promoted\n", s.env.namespace()));
    let rollout = s.get("web").await?;
    assert_eq!(
        rollout["status"].get("pauseConditions"),
        None,
        "{rollout:#}"
    );
    assert_eq!(rollout["spec"]["paused"], json!(false));
    assert_eq!(
        rollout["status"]["currentStepIndex"],
        json!(1),
        "a pause is lifted, not skipped"
    );
    // Status first (subresource), then the user pause on the object, as Argo's plugin does.
    assert_eq!(
        s.writes(),
        vec![
            format!("PATCH {}/status", s.path("web")),
            format!("PATCH {}", s.path("web"))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn promote_skips_a_step_that_is_not_a_pause() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("web", json!({"observedGeneration": "1", "currentStepIndex": 2, "stableRS": "old", "currentPodHash": "new"}))
        .await?;
    s.writes();
    let out = s.plugin.ok(&["promote", "web"]).await;
    assert!(
        out.contains("skipped the current step, now at step 3"),
        "{out}"
    );
    let rollout = s.get("web").await?;
    assert_eq!(rollout["status"]["currentStepIndex"], json!(3));
    assert_eq!(s.writes(), vec![format!("PATCH {}/status", s.path("web"))]);

    // Past the last step there is nothing to skip, and nothing is written.
    s.set_status("web", json!({"currentStepIndex": 4})).await?;
    s.writes();
    let out = s.plugin.ok(&["promote", "web"]).await;
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(s.writes(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn full_promotion_abort_and_retry_write_the_status() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("web", paused_status()).await?;
    let ns = s.env.namespace().to_string();
    s.writes();

    assert_eq!(
        s.plugin.ok(&["promote", "web", "--full"]).await,
        format!("rollout {ns}/web fully promoted\n")
    );
    assert_eq!(s.get("web").await?["status"]["promoteFull"], json!(true));

    assert_eq!(
        s.plugin.ok(&["abort", "web"]).await,
        format!("rollout {ns}/web aborted\n")
    );
    assert_eq!(s.get("web").await?["status"]["abort"], json!(true));

    // Argo's spelling (`retry rollout NAME`) and the short one.
    assert_eq!(
        s.plugin.ok(&["retry", "rollout", "web"]).await,
        format!("rollout {ns}/web retried\n")
    );
    assert_eq!(s.get("web").await?["status"]["abort"], json!(false));
    s.plugin.ok(&["abort", "web"]).await;
    s.plugin.ok(&["retry", "web"]).await;
    assert_eq!(s.get("web").await?["status"]["abort"], json!(false));

    let status = format!("PATCH {}/status", s.path("web"));
    assert_eq!(s.writes(), vec![status.clone(); 5]);

    // Already fully promoted: nothing to write.
    s.set_status("web", json!({"stableRS": "new"})).await?;
    s.writes();
    assert!(
        s.plugin
            .ok(&["promote", "web", "--full"])
            .await
            .contains("already fully promoted")
    );
    assert_eq!(s.writes(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn pause_and_restart_write_the_spec() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("web", json!({"observedGeneration": "1"})).await?;
    let ns = s.env.namespace().to_string();
    s.writes();

    assert_eq!(
        s.plugin.ok(&["pause", "web"]).await,
        format!("rollout {ns}/web paused\n")
    );
    assert_eq!(s.get("web").await?["spec"]["paused"], json!(true));

    let before = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(
        s.plugin.ok(&["restart", "web"]).await,
        format!("rollout {ns}/web restarts now\n")
    );
    let at: k8s_openapi::jiff::Timestamp = s.get("web").await?["spec"]["restartAt"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    assert!(
        at.as_second() >= before.as_second() && at.as_second() <= before.as_second() + 5,
        "restartAt {at}"
    );

    assert_eq!(
        s.plugin.ok(&["restart", "web", "--in", "5m"]).await,
        format!("rollout {ns}/web restarts in 5m\n")
    );
    let later: k8s_openapi::jiff::Timestamp = s.get("web").await?["spec"]["restartAt"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    assert!(
        (later.as_second() - at.as_second() - 300).abs() <= 5,
        "restartAt {later} is not 5m after {at}"
    );

    let object = format!("PATCH {}", s.path("web"));
    assert_eq!(s.writes(), vec![object.clone(), object.clone(), object]);
    Ok(())
}

/// A ReplicaSet of revision `revision` controlled by `rollout`, running `image` (no pods).
fn replica_set(rollout: &Rollout, hash: &str, revision: i64, image: &str) -> ReplicaSet {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-{hash}"),
                     "labels": {"app": name, "rollouts-pod-template-hash": hash},
                     "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
                     "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name,
                                          "uid": rollout.metadata.uid, "controller": true}]},
        "spec": {"replicas": 0,
                 "selector": {"matchLabels": {"app": name, "rollouts-pod-template-hash": hash}},
                 "template": {"metadata": {"labels": {"app": name, "rollouts-pod-template-hash": hash}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}
    }))
    .expect("a valid ReplicaSet")
}

#[tokio::test]
async fn undo_restores_the_template_of_a_revision() -> TestResult {
    let s = Setup::new().await?;
    let rollout = s.rollout("web", json!({"observedGeneration": "1"})).await?;
    let ns = s.env.namespace().to_string();
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), &ns);
    sets.create(
        &PostParams::default(),
        &replica_set(&rollout, "aaa", 1, "shop/web:1"),
    )
    .await?;
    sets.create(
        &PostParams::default(),
        &replica_set(&rollout, "bbb", 2, "shop/web:2"),
    )
    .await?;
    s.writes();

    let out = s.plugin.ok(&["undo", "web"]).await;
    assert_eq!(
        out,
        format!("rollout {ns}/web rolled back to the template of revision 1\n")
    );
    let template = &s.get("web").await?["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "shop/web:1");
    assert_eq!(
        template["metadata"]["labels"],
        json!({"app": "web"}),
        "the hash label is not copied"
    );
    assert_eq!(s.writes(), vec![format!("PATCH {}", s.path("web"))]);

    // The template now is revision 1's: going there again writes nothing.
    let out = s.plugin.ok(&["undo", "web", "--to-revision", "1"]).await;
    assert!(out.contains("skipped rollback"), "{out}");
    assert_eq!(s.writes(), Vec::<String>::new());

    let run = s.plugin.run(&["undo", "web", "--to-revision", "7"]).await;
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!(
            "error: revision 7 is not in the history of rollout {ns}/web; revisions kept: 2, 1\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn set_image_changes_one_or_every_container() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("web", json!({"observedGeneration": "1"})).await?;
    let ns = s.env.namespace().to_string();
    s.writes();

    let out = s
        .plugin
        .ok(&["set", "image", "web", "web=shop/web:3"])
        .await;
    assert_eq!(
        out,
        format!("rollout {ns}/web: image of web set to shop/web:3\n")
    );
    let spec = s.get("web").await?["spec"]["template"]["spec"].clone();
    assert_eq!(spec["containers"][0]["image"], "shop/web:3");
    assert_eq!(spec["containers"][1]["image"], "shop/proxy:1");
    assert_eq!(
        s.writes(),
        vec![format!("PUT {}", s.path("web"))],
        "an update, as Argo's plugin makes"
    );

    let out = s.plugin.ok(&["set", "image", "web", "*=shop/all:4"]).await;
    assert_eq!(
        out,
        format!("rollout {ns}/web: image of migrate, web, proxy set to shop/all:4\n")
    );
    let spec = s.get("web").await?["spec"]["template"]["spec"].clone();
    assert_eq!(spec["initContainers"][0]["image"], "shop/all:4");
    assert_eq!(spec["containers"][1]["image"], "shop/all:4");

    let run = s
        .plugin
        .run(&["set", "image", "web", "db=postgres:16"])
        .await;
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!(
            "error: rollout {ns}/web has no container \"db\"; its containers are: migrate, web, proxy (use *=IMAGE to set them all)\n"
        )
    );
    let run = s.plugin.run(&["set", "image", "web", "postgres"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("expected CONTAINER=IMAGE"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test]
async fn errors_name_the_object_and_say_where_to_look() -> TestResult {
    let s = Setup::new().await?;
    s.rollout("checkout", json!({"observedGeneration": "1"}))
        .await?;
    let home = s.env.namespace().to_string();
    let elsewhere = for_test().await?;
    let other = Plugin::new(&s.plugin.kubeconfig, elsewhere.namespace());

    let run = other.run(&["get", "rollout", "checkout"]).await;
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!(
            "error: rollout {0}/checkout not found in namespace {0}; did you mean -n {home}?\n",
            elsewhere.namespace()
        )
    );
    // Mutations say the same.
    let run = other.run(&["abort", "checkout"]).await;
    assert!(
        run.stderr.contains(&format!("did you mean -n {home}?")),
        "{}",
        run.stderr
    );

    let run = s.plugin.run(&["promote", "chekout"]).await;
    assert_eq!(
        run.stderr,
        format!(
            "error: rollout {home}/chekout not found in namespace {home}; did you mean checkout?\n"
        )
    );
    let run = other.run(&["status", "nothing-like-it"]).await;
    assert_eq!(run.code, Some(3), "status: 3 = could not read the rollout");
    assert!(run.stderr.contains("has no rollouts"), "{}", run.stderr);
    Ok(())
}

#[tokio::test]
async fn status_exit_codes_suit_pipelines() -> TestResult {
    let s = Setup::new().await?;
    s.rollout(
        "web",
        json!({"observedGeneration": "1", "phase": "Healthy"}),
    )
    .await?;
    assert_eq!(s.plugin.ok(&["status", "web"]).await, "Healthy\n");

    s.set_status(
        "web",
        json!({"phase": "Progressing", "message": "more replicas need to be updated"}),
    )
    .await?;
    let run = s.plugin.run(&["status", "web", "--watch=false"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "Progressing - more replicas need to be updated\n")
    );
    let run = s.plugin.run(&["status", "web", "--timeout", "1s"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("was not Healthy after 1s"),
        "{}",
        run.stderr
    );

    // A watch ends as soon as the rollout gets there.
    let watching = s
        .plugin
        .command(&["status", "web", "--timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.set_status("web", json!({"phase": "Degraded", "message": "RolloutAborted: Rollout aborted update to revision 2"}))
        .await?;
    let output =
        tokio::time::timeout(Duration::from_secs(20), watching.wait_with_output()).await??;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Progressing - more replicas need to be updated\nDegraded - RolloutAborted: Rollout aborted update to revision 2\n"
    );

    // A spec change the controller has not seen yet is not trusted as Healthy.
    s.set_status("web", json!({"phase": "Healthy", "message": null}))
        .await?;
    s.rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    let run = s.plugin.run(&["status", "web", "--watch=false"]).await;
    assert_eq!(
        run.stdout,
        "Progressing - waiting for rollout spec update to be observed\n"
    );
    Ok(())
}

#[tokio::test]
async fn get_and_list_show_rollouts_and_analysis_runs() -> TestResult {
    let s = Setup::new().await?;
    let rollout = s.rollout("web", paused_status()).await?;
    let ns = s.env.namespace().to_string();

    let text = s.plugin.ok(&["get", "rollout", "web"]).await;
    assert!(
        text.starts_with(&format!(
            "Name:            web\nNamespace:       {ns}\nStatus:          ॥ Paused\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("  Step:          1/4\n  SetWeight:     20\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text:?}");
    let json: Value =
        serde_json::from_str(&s.plugin.ok(&["get", "ro", "web", "-o", "json"]).await)?;
    assert_eq!(json["metadata"]["uid"], json!(rollout.metadata.uid));
    assert_eq!(json["status"]["currentStepIndex"], json!(1));

    let table = s.plugin.ok(&["list", "rollouts"]).await;
    assert_eq!(
        table,
        "NAME  STRATEGY  STATUS       STEP  SET-WEIGHT  READY  DESIRED  UP-TO-DATE  AVAILABLE\n\
         web   Canary    Paused       1/4   20          0/0    2        0           0\n"
    );
    let all = s.plugin.ok(&["list", "rollouts", "-A"]).await;
    assert!(
        // Columns are padded to the widest namespace of the whole cluster (tests share it).
        all.lines().any(|l| {
            let mut columns = l.split_whitespace();
            columns.next() == Some(ns.as_str()) && columns.next() == Some("web")
        }),
        "{all}"
    );
    let list: Value =
        serde_saphyr::from_str(&s.plugin.ok(&["list", "rollouts", "-o", "yaml"]).await)?;
    assert_eq!(list["items"][0]["metadata"]["name"], "web");

    let runs: Api<AnalysisRun> = Api::namespaced(s.client(), &ns);
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "web-new-2-2"},
        "spec": {"metrics": [{"name": "error-rate", "successCondition": "result[0] < 0.05", "failureLimit": 1,
                              "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "q"}}}]}
    }))?;
    runs.create(&PostParams::default(), &run).await?;
    runs.patch_status("web-new-2-2", &PatchParams::default(), &Patch::Merge(json!({"status": {
        "phase": "Failed", "message": "Metric \"error-rate\" assessed Failed due to failed (2) > failureLimit (1)",
        "metricResults": [{"name": "error-rate", "phase": "Failed", "count": 3, "successful": 1, "failed": 2,
            "measurements": [
                {"phase": "Successful", "value": "[0.01]", "finishedAt": "2024-05-01T10:00:00Z"},
                {"phase": "Failed", "value": "[0.09]", "finishedAt": "2024-05-01T10:00:30Z"},
                {"phase": "Failed", "value": "[0.12]", "finishedAt": "2024-05-01T10:01:00Z"}]}]}}))).await?;
    let text = s.plugin.ok(&["get", "analysisrun", "web-new-2-2"]).await;
    assert!(text.contains("Status:          ✖ Failed\n"), "{text}");
    assert!(
        text.contains("error-rate  Prometheus  ✖ Failed  3         1  2  0  0  success: result[0] < 0.05; failureLimit: 1\n"),
        "{text}"
    );
    assert!(text.contains("  ✖ [0.12]  "), "{text}");
    let json: Value = serde_json::from_str(
        &s.plugin
            .ok(&["get", "ar", "web-new-2-2", "-o", "json"])
            .await,
    )?;
    assert_eq!(json["status"]["phase"], "Failed");
    Ok(())
}

#[tokio::test]
async fn version_and_completion_need_no_cluster() -> TestResult {
    let plugin = Plugin::new(std::path::Path::new("/nonexistent/kubeconfig"), "default");
    let version = plugin.ok(&["version"]).await;
    assert!(
        version.starts_with(&format!("kubectl-ramp: v{}\n", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = plugin.ok(&["completion", shell]).await;
        for command in ["promote", "abort", "undo", "lint"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    Ok(())
}
