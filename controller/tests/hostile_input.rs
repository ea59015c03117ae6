//! Hostile input: every reader of user text (the manifest parser behind `kubectl ramp lint`
//! and the controller's validation, the GitOps render, the condition language) answers
//! with a clear error that names the file or field, in bounded time and memory, and never
//! panics. The fuzzing corpora in `fuzz/corpus/` are replayed here too, so an input the
//! fuzzer once found keeps being checked in every `cargo test`.

use std::path::{Path, PathBuf};

use ramp_controller::gitops::render::{DirectoryOptions, SourceFile, render};
use ramp_controller::lint::Report;
use ramp_controller::manifest;

const ROLLOUT_HEAD: &str = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
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
      steps:
";

fn lint(file: &str, text: &str) -> Report {
    let mut report = Report::default();
    report.add_file(file, text);
    report
}

fn messages(report: &Report) -> Vec<String> {
    report
        .problems
        .iter()
        .map(|p| {
            format!(
                "{}:{}: {}: {}",
                p.file,
                p.line.unwrap_or(0),
                p.path,
                p.message
            )
        })
        .collect()
}

fn render_one(path: &str, content: Vec<u8>) -> Result<usize, Vec<String>> {
    let files = [SourceFile {
        path: path.to_string(),
        content,
    }];
    render(&files, &DirectoryOptions::default())
        .map(|manifests| manifests.len())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn deeply_nested_yaml_is_refused_naming_the_file() {
    for text in [
        "a: ".to_string() + &"[".repeat(100_000) + &"]".repeat(100_000),
        "a:\n".to_string()
            + &(1..2_000)
                .map(|depth| format!("{}k{depth}:\n", " ".repeat(depth)))
                .collect::<String>(),
        "{".repeat(50_000),
    ] {
        let report = lint("deep.yaml", &text);
        assert!(!report.is_valid());
        let found = messages(&report);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("deep.yaml:"), "{found:?}");
        assert!(found[0].contains("not valid YAML"), "{found:?}");

        let errors = render_one("deep.yaml", text.into_bytes()).unwrap_err();
        assert!(errors[0].starts_with("deep.yaml"), "{errors:?}");
    }
}

#[test]
fn alias_bombs_are_refused() {
    // The "billion laughs": nine levels of ten aliases each expand to 10^9 nodes.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let list = [previous.as_str(); 10].join(", ");
        text += &format!("a{level}: &a{level} [{list}]\n");
    }
    let report = lint("laughs.yaml", &text);
    let found = messages(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("laughs.yaml:"), "{found:?}");

    let errors = render_one("laughs.yaml", text.into_bytes()).unwrap_err();
    assert!(errors[0].starts_with("laughs.yaml"), "{errors:?}");
}

#[test]
fn a_ten_megabyte_manifest_is_read_whole() {
    // One ConfigMap carrying 10 MB of data: large, but a well-formed manifest. The render
    // reads it whole (the API server, not the reader, decides whether it fits in etcd).
    let blob = "x".repeat(10 << 20);
    let text =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {blob}\n");
    assert_eq!(render_one("big.yaml", text.clone().into_bytes()), Ok(1));
    let report = lint("big.yaml", &text);
    assert!(report.is_valid(), "{:?}", messages(&report));

    // Ten megabytes of tiny documents: more documents than a file may hold.
    let many = "---\nkind: ConfigMap\n".repeat(600_000);
    assert!(many.len() >= 10 << 20);
    let errors = render_one("many.yaml", many.into_bytes()).unwrap_err();
    assert!(errors[0].starts_with("many.yaml"), "{errors:?}");
    assert!(errors[0].contains("document"), "{errors:?}");
}

#[test]
fn invalid_utf8_is_refused_naming_the_file() {
    let mut bytes =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x80]);
    bytes.push(b'\n');
    let errors = render_one("bad.yaml", bytes).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("bad.yaml"), "{errors:?}");
    assert!(errors[0].contains("UTF-8"), "{errors:?}");
}

#[test]
fn a_rollout_with_ten_thousand_steps_is_refused_at_its_steps() {
    let steps: String = (0..10_000)
        .map(|i| {
            if i % 2 == 0 {
                "      - setWeight: 10\n".to_string()
            } else {
                "      - pause: {duration: 1s}\n".to_string()
            }
        })
        .collect();
    let report = lint("steps.yaml", &(ROLLOUT_HEAD.to_string() + &steps));
    let found = messages(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("steps.yaml:19: spec.strategy.canary.steps:"),
        "{found:?}"
    );
    assert!(found[0].contains("10000 steps"), "{found:?}");
}

#[test]
fn a_hundred_kilobyte_condition_is_refused_at_its_field() {
    let condition = (0..50_000).map(|_| "1+").collect::<String>() + "1 > 0";
    assert!(condition.len() > 100_000);
    let text = format!(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: huge
spec:
  metrics:
  - name: error-rate
    successCondition: \"{condition}\"
    provider:
      prometheus:
        address: http://prometheus:9090
        query: up
"
    );
    let report = lint("huge.yaml", &text);
    let found = messages(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("huge.yaml:8: spec.metrics[0].successCondition:"),
        "{found:?}"
    );
    assert!(
        found[0].len() < 400,
        "the message does not echo the input: {found:?}"
    );
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut entries: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read the fuzz corpus {}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 10,
        "the corpus {} holds its seeds",
        dir.display()
    );
    entries
}

#[test]
fn the_manifest_fuzz_corpus_replays_cleanly() {
    for (path, bytes) in corpus("manifest") {
        let text = String::from_utf8_lossy(&bytes);
        let report = lint("corpus.yaml", &text);
        for problem in &report.problems {
            assert_eq!(problem.file, "corpus.yaml", "{}", path.display());
        }
        if let Ok(documents) = manifest::parse("corpus.yaml", &text) {
            for document in &documents {
                let _ = manifest::decode::<ramp_controller::api::Rollout>(&document.value);
            }
        }
    }
}

#[test]
fn the_gitops_render_fuzz_corpus_replays_cleanly() {
    for (path, bytes) in corpus("gitops_render") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match render_one("app.yaml", bytes) {
            Ok(_) => {}
            Err(errors) => {
                assert!(!errors.is_empty(), "{name}");
                for error in errors {
                    assert!(error.starts_with("app.yaml"), "{name}: {error}");
                }
            }
        }
    }
}
