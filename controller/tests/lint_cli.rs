//! `kubectl ramp lint` as a user runs it: output lines, summary, exit status, stdin, JSON.

use std::io::Write;
use std::process::{Command, Stdio};

fn kubectl_ramp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-ramp"))
}

const ROLLOUT: &str = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
  strategy:
    canary:
      canaryService: web
      stableService: web
      steps:
      - setWeight: 20
";

#[test]
fn valid_files_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.yaml");
    std::fs::write(
        &file,
        ROLLOUT.replace("canaryService: web", "canaryService: web-canary"),
    )
    .unwrap();
    let out = kubectl_ramp()
        .args(["lint", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 documents valid (Rollout 1) in 1 file\n"
    );
}

#[test]
fn problems_exit_one_with_file_line_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, ROLLOUT).unwrap();
    let out = kubectl_ramp()
        .args(["lint", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "{}:18: spec.strategy.canary.stableService: the same Service is used as stable and canary; two different Services are required\n",
        file.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(
        stdout.ends_with("1 problem in 1 of 1 documents (Rollout 1) in 1 file\n"),
        "{stdout}"
    );
}

#[test]
fn reads_standard_input_and_prints_json() {
    let mut child = kubectl_ramp()
        .args(["lint", "-f", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ROLLOUT.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["problems"][0]["file"], "-");
    assert_eq!(json["problems"][0]["line"], 18);
    assert_eq!(json["problems"][0]["object"], "Rollout/web");
    assert_eq!(
        json["problems"][0]["path"],
        "spec.strategy.canary.stableService"
    );
    assert_eq!(json["checked"]["Rollout"], 1);
}

#[test]
fn missing_files_and_bad_usage_exit_two() {
    let out = kubectl_ramp()
        .args(["lint", "-f", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/x.yaml"));
    let out = kubectl_ramp().args(["lint"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn lints_a_directory_of_argo_examples() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/testdata/reference/argo-rollouts/examples/istio");
    let out = kubectl_ramp()
        .args(["lint", "-f"])
        .arg(&examples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("documents valid (Rollout 2)"), "{stdout}");
    assert!(
        stdout.contains("documents of other kinds skipped"),
        "{stdout}"
    );
}
