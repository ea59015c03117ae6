//! Argo Rollouts' own manifests (examples and end-to-end tests) against Ramp's types and
//! validation: every document of a Ramp kind decodes, serializes back to the same JSON and
//! lints clean, except the `malformed-*` ones, which must be refused naming the field.

use std::path::{Path, PathBuf};

use ramp_controller::api::{
    AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment, Rollout,
};
use ramp_controller::lint::{KINDS, Report};
use ramp_controller::manifest::{self, Document};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/testdata/reference/argo-rollouts")
}

/// Every YAML file of the corpus, except Helm templates (which are YAML only once rendered;
/// the blue-green tests render them with Helm).
fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![
        corpus_root().join("examples"),
        corpus_root().join("test/e2e"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("helm-blue-green/templates") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn display(path: &Path) -> String {
    path.strip_prefix(corpus_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Files of Argo's corpus that are not valid YAML at all (kubectl and PyYAML refuse them
/// too), with the line Ramp must report.
const NOT_YAML: [(&str, u32); 2] = [
    // `linkerd.io/inject: {{args.linkerd-enabled}}` is an unquoted flow mapping used as a key.
    ("examples/traffic-management/rollout-linkerd.yaml", 101),
    // The second metric is indented deeper than the first.
    ("test/e2e/expectedfailures/analysis-run-failfast.yaml", 19),
];

fn is_yaml(path: &Path) -> bool {
    !NOT_YAML.iter().any(|(name, _)| display(path) == *name)
}

/// Argo's end-to-end suite fills placeholders into some manifests before applying them;
/// do the same.
fn fill_placeholders(text: &str) -> String {
    text.replace("ROLLOUT_NAME", "rollout-name")
        .replace("REPLACEME", "replaceme")
        .replace("$$name$$", "name")
}

fn is_malformed(path: &Path) -> bool {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("malformed-")
}

fn round_trip<T: DeserializeOwned + Serialize>(document: &Document) -> Result<(), String> {
    let decoded = manifest::decode::<T>(&document.value).map_err(|e| e.to_string())?;
    let unknown: Vec<_> = decoded
        .unknown_fields
        .iter()
        .filter(|p| !matches!(p.as_str(), "apiVersion" | "kind"))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("unknown fields {unknown:?}"));
    }
    let written = serde_json::to_value(&decoded.object).map_err(|e| e.to_string())?;
    let expected = manifest::without_nulls(&document.value);
    if written != expected {
        return Err(format!(
            "serialized differently:\n  read:    {}\n  written: {}",
            serde_json::to_string(&expected).unwrap(),
            serde_json::to_string(&written).unwrap()
        ));
    }
    Ok(())
}

#[test]
fn every_document_round_trips_unchanged() {
    let mut failures = Vec::new();
    let mut count = 0;
    for file in corpus_files()
        .into_iter()
        .filter(|f| !is_malformed(f) && is_yaml(f))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        let documents = manifest::parse(&display(&file), &text)
            .unwrap_or_else(|e| panic!("{}: {e}", display(&file)));
        for document in documents
            .iter()
            .filter(|d| KINDS.contains(&d.kind().unwrap_or("")))
        {
            count += 1;
            let result = match document.kind().unwrap() {
                "Rollout" => round_trip::<Rollout>(document),
                "AnalysisTemplate" => round_trip::<AnalysisTemplate>(document),
                "ClusterAnalysisTemplate" => round_trip::<ClusterAnalysisTemplate>(document),
                "AnalysisRun" => round_trip::<AnalysisRun>(document),
                "Experiment" => round_trip::<Experiment>(document),
                _ => unreachable!(),
            };
            if let Err(message) = result {
                failures.push(format!(
                    "{} {}: {message}",
                    display(&file),
                    document.describe()
                ));
            }
        }
    }
    assert!(count > 100, "only {count} documents found in the corpus");
    assert!(
        failures.is_empty(),
        "{} of {count} documents:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_valid_document_lints_clean() {
    let mut report = Report::default();
    for file in corpus_files()
        .into_iter()
        .filter(|f| !is_malformed(f) && is_yaml(f))
    {
        let text = fill_placeholders(&std::fs::read_to_string(&file).unwrap());
        report.add_file(&display(&file), &text);
    }
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.is_empty(),
        "{}\n{}",
        report.summary(),
        problems.join("\n")
    );
    let checked: usize = report.checked.values().sum();
    assert!(checked > 100, "{}", report.summary());
}

#[test]
fn malformed_documents_are_refused_naming_the_field() {
    let malformed: Vec<_> = corpus_files()
        .into_iter()
        .filter(|f| is_malformed(f))
        .collect();
    assert_eq!(malformed.len(), 6, "{malformed:?}");
    for file in malformed {
        let mut report = Report::default();
        report.add_file(&display(&file), &std::fs::read_to_string(&file).unwrap());
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("resources.requests.memory: \"invalid\" is not a quantity")),
            "{}: {problems:#?}",
            display(&file)
        );
        assert!(
            report.problems.iter().all(|p| p.line.is_some()),
            "every problem has a line: {problems:#?}"
        );
    }
}

#[test]
fn files_that_are_not_yaml_are_refused_with_their_line() {
    for (name, line) in NOT_YAML {
        let mut report = Report::default();
        report.add_file(
            name,
            &std::fs::read_to_string(corpus_root().join(name)).unwrap(),
        );
        assert_eq!(report.problems.len(), 1, "{name}: {:?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(problem.line, Some(line), "{name}: {problem}");
        assert!(problem.message.starts_with("not valid YAML"), "{problem}");
    }
}
