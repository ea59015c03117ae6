//! The generated CRDs: up to date in `crds/`, portable to Kubernetes 1.20, and covering every
//! field of Argo Rollouts' CRDs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference() -> PathBuf {
    workspace().join("e2e/testdata/reference")
}

#[test]
fn crds_directory_matches_the_types() {
    let crds = ramp_controller::crd::all();
    let dir = workspace().join("crds");
    let mut stale = Vec::new();
    let mut expected_files = BTreeSet::new();
    for crd in &crds {
        let name = ramp_controller::crd::file_name(crd);
        let generated = ramp_controller::crd::to_yaml(crd).unwrap();
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if generated != on_disk {
            stale.push(name.clone());
        }
        expected_files.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    let extra: Vec<_> = present.difference(&expected_files).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "crds/ is out of date (stale: {stale:?}, not generated: {extra:?}); \
         regenerate with `cargo run -p ramp-controller -- crd --output-dir crds`"
    );
}

#[test]
fn crds_are_portable_to_kubernetes_1_20() {
    for crd in ramp_controller::crd::all() {
        let problems = ramp_controller::crd::portability_problems(&crd);
        assert!(
            problems.is_empty(),
            "{}: {problems:#?}",
            crd.spec.names.kind
        );
        let json = serde_json::to_string(&crd).unwrap();
        assert!(!json.contains("x-kubernetes-validations"));
    }
}

#[test]
fn every_argo_field_exists_in_the_schema() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for kind in [
        "Rollout",
        "AnalysisTemplate",
        "ClusterAnalysisTemplate",
        "AnalysisRun",
        "Experiment",
    ] {
        let crd = ramp_controller::crd::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"));
        let crd = serde_json::to_value(crd).unwrap();
        let schema = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema")
            .unwrap();
        let list =
            std::fs::read_to_string(reference().join(format!("crd-fields/{kind}.txt"))).unwrap();
        for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            checked += 1;
            if matches!(path, "apiVersion" | "kind" | "metadata") {
                continue; // served by Kubernetes for every object
            }
            if !schema_has_path(schema, path) {
                missing.push(format!("{kind}: {path}"));
            }
        }
    }
    assert!(checked > 1000, "only {checked} reference paths read");
    assert!(
        missing.is_empty(),
        "{} paths missing:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// Follows a path such as `spec.steps[].setWeight` or `spec.labels{}` through a schema.
fn schema_has_path(schema: &Value, path: &str) -> bool {
    let mut node = schema;
    for segment in path.split('.') {
        let (name, suffixes) = match segment.find(['[', '{']) {
            Some(i) => segment.split_at(i),
            None => (segment, ""),
        };
        if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            && node.get("properties").is_none()
        {
            return true; // anything goes below a free-form object
        }
        match node.pointer(&format!("/properties/{name}")) {
            Some(child) => node = child,
            None => return false,
        }
        let mut rest = suffixes;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[]") {
                match node.get("items") {
                    Some(items) => node = items,
                    None => return false,
                }
                rest = r;
            } else if let Some(r) = rest.strip_prefix("{}") {
                match node.get("additionalProperties") {
                    Some(Value::Object(_)) => node = &node["additionalProperties"],
                    _ => return node.get("x-kubernetes-preserve-unknown-fields").is_some(),
                }
                rest = r;
            } else {
                return false;
            }
        }
    }
    true
}
