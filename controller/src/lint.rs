//! `kubectl ramp lint`: offline checking of manifests, document by document.
//!
//! ```text
//!  file ─parse─▶ documents ─┬─ Ramp kind ─decode─▶ typed object ─validate─▶ problems
//!                           └─ other kind ─▶ skipped (counted)
//! ```
//!
//! Every problem carries the file, the line (where the YAML gives one), the field path and a
//! message; the same validation backs the controller's `InvalidSpec` condition.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::api::{
    API_VERSION, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment, Rollout,
};
use crate::manifest::{self, Document};
use crate::validation::{self, FieldError};

/// The kinds lint checks.
pub const KINDS: [&str; 5] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
    "Experiment",
];

/// One problem found in one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// Line in the file (from 1), when the parser can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// `Kind/name` of the document, when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field, empty for problems with the whole file.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What linting a set of files found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Documents checked, by kind.
    pub checked: BTreeMap<String, usize>,
    /// Documents of other kinds, skipped, by kind.
    pub skipped: BTreeMap<String, usize>,
    /// Documents with at least one problem.
    pub invalid_documents: usize,
    pub files: usize,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line for people: what was checked, what was wrong, what was skipped.
    pub fn summary(&self) -> String {
        let checked: usize = self.checked.values().sum();
        let skipped: usize = self.skipped.values().sum();
        let list = |counts: &BTreeMap<String, usize>| {
            counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = if self.problems.is_empty() {
            format!("{checked} documents valid")
        } else {
            format!(
                "{} problem{} in {} of {checked} documents",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" },
                self.invalid_documents
            )
        };
        if checked > 0 {
            line += &format!(" ({})", list(&self.checked));
        }
        line += &format!(
            " in {} file{}",
            self.files,
            if self.files == 1 { "" } else { "s" }
        );
        if skipped > 0 {
            line += &format!(
                "; {skipped} documents of other kinds skipped ({})",
                list(&self.skipped)
            );
        }
        line
    }

    /// Lints the text of one file (`-` for standard input).
    pub fn add_file(&mut self, file: &str, text: &str) {
        self.files += 1;
        let documents = match manifest::parse(file, text) {
            Ok(documents) => documents,
            Err(error) => {
                self.invalid_documents += 1;
                self.problems.push(Problem {
                    file: file.to_string(),
                    line: (error.line > 0).then_some(error.line),
                    object: None,
                    path: String::new(),
                    message: format!("not valid YAML: {}", error.message),
                });
                return;
            }
        };
        for document in &documents {
            let kind = document.kind().unwrap_or("").to_string();
            if !KINDS.contains(&kind.as_str()) {
                let label = if kind.is_empty() {
                    "<no kind>".to_string()
                } else {
                    kind
                };
                *self.skipped.entry(label).or_default() += 1;
                continue;
            }
            *self.checked.entry(kind).or_default() += 1;
            let errors = check_document(document);
            if !errors.is_empty() {
                self.invalid_documents += 1;
            }
            let object = Some(document.describe());
            self.problems
                .extend(errors.into_iter().map(|error| Problem {
                    file: file.to_string(),
                    line: document.line(&error.path).or(Some(document.start_line())),
                    object: object.clone(),
                    path: error.path,
                    message: error.message,
                }));
        }
    }
}

/// Every problem with one document of a Ramp kind.
pub fn check_document(document: &Document) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let push = |errors: &mut Vec<FieldError>, path: &str, message: String| {
        errors.push(FieldError {
            path: path.to_string(),
            message,
        });
    };
    match document.api_version() {
        Some(API_VERSION) => {}
        Some(other) => push(
            &mut errors,
            "apiVersion",
            format!("{other:?} is not served; use {API_VERSION}"),
        ),
        None => push(
            &mut errors,
            "apiVersion",
            format!("required: {API_VERSION}"),
        ),
    }
    let metadata = document.value.get("metadata");
    let named = ["name", "generateName"].iter().any(|k| {
        metadata
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    });
    if !named {
        push(
            &mut errors,
            "metadata.name",
            "required: every object needs a name".to_string(),
        );
    }
    let kind = document.kind().unwrap_or_default();
    let decoded = match kind {
        "Rollout" => decode_and_validate::<Rollout>(document, validation::validate_rollout),
        "AnalysisTemplate" => decode_and_validate::<AnalysisTemplate>(document, |t| {
            validation::validate_analysis_template(&t.spec)
        }),
        "ClusterAnalysisTemplate" => {
            decode_and_validate::<ClusterAnalysisTemplate>(document, |t| {
                validation::validate_analysis_template(&t.spec)
            })
        }
        "AnalysisRun" => decode_and_validate::<AnalysisRun>(document, |r| {
            validation::validate_analysis_run(&r.spec)
        }),
        "Experiment" => {
            decode_and_validate::<Experiment>(document, validation::validate_experiment)
        }
        _ => Vec::new(),
    };
    errors.extend(decoded);
    errors
}

fn decode_and_validate<T: serde::de::DeserializeOwned>(
    document: &Document,
    validate: impl FnOnce(&T) -> Vec<FieldError>,
) -> Vec<FieldError> {
    match manifest::decode::<T>(&document.value) {
        Err(error) => vec![FieldError {
            path: error.path,
            message: error.message,
        }],
        Ok(decoded) => {
            let mut errors: Vec<FieldError> = decoded
                .unknown_fields
                .iter()
                .filter(|path| !is_served_by_kubernetes(path))
                .map(|path| unknown_field(document.kind().unwrap_or_default(), path))
                .collect();
            errors.extend(validate(&decoded.object));
            errors
        }
    }
}

/// Top-level fields every object may carry that the typed kinds do not model.
fn is_served_by_kubernetes(path: &str) -> bool {
    matches!(path, "apiVersion" | "kind")
}

fn unknown_field(kind: &str, path: &str) -> FieldError {
    let (parent, name) = match path.rfind(['.', ']']) {
        Some(i) if path.as_bytes()[i] == b'.' => (&path[..i], &path[i + 1..]),
        _ => ("", path),
    };
    let known = known_fields(kind, parent);
    let hint = validation::names::did_you_mean(name, known.iter().map(String::as_str))
        .map(|suggestion| format!("; did you mean {suggestion:?}?"))
        .unwrap_or_default();
    FieldError {
        path: path.to_string(),
        message: format!("unknown field {name:?}{hint} (the API server would drop it silently)"),
    }
}

/// Property names the CRD schema allows at `parent` (a field path without indices' values).
fn known_fields(kind: &str, parent: &str) -> Vec<String> {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        crate::crd::all()
            .into_iter()
            .filter_map(|crd| {
                let kind = crd.spec.names.kind.clone();
                let value = serde_json::to_value(crd).ok()?;
                Some((
                    kind,
                    value
                        .pointer("/spec/versions/0/schema/openAPIV3Schema")?
                        .clone(),
                ))
            })
            .collect()
    });
    let Some(mut node) = schemas.get(kind) else {
        return Vec::new();
    };
    for segment in parent.split('.').filter(|s| !s.is_empty()) {
        let (name, indexed) = match segment.find('[') {
            Some(i) => (&segment[..i], true),
            None => (segment, false),
        };
        let Some(child) = node.pointer(&format!("/properties/{name}")) else {
            return Vec::new();
        };
        node = child;
        if indexed {
            let Some(items) = node.get("items") else {
                return Vec::new();
            };
            node = items;
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {duration: 30s}
---
apiVersion: v1
kind: Service
metadata:
  name: web
"#;

    #[test]
    fn a_valid_file_has_no_problems_and_counts_skipped_kinds() {
        let mut report = Report::default();
        report.add_file("ok.yaml", VALID);
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(report.checked.get("Rollout"), Some(&1));
        assert_eq!(report.skipped.get("Service"), Some(&1));
        assert_eq!(
            report.summary(),
            "1 documents valid (Rollout 1) in 1 file; 1 documents of other kinds skipped (Service 1)"
        );
    }

    #[test]
    fn problems_carry_file_line_and_path() {
        let text = VALID
            .replace("setWeight: 20", "setWeight: 120")
            .replace("image: nginx:1.25", "image: nginx:1.25\n        resources:\n          requests:\n            memory: invalid");
        let mut report = Report::default();
        report.add_file("bad.yaml", &text);
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            lines.contains(&"bad.yaml:19: spec.template.spec.containers[0].resources.requests.memory: \"invalid\" is not a quantity (e.g. 500m, 128Mi, 2)".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"bad.yaml:23: spec.strategy.canary.steps[0].setWeight: 120 is not between 0 and 100".to_string()),
            "{lines:#?}"
        );
        assert_eq!(report.invalid_documents, 1);
    }

    #[test]
    fn unknown_fields_are_reported_with_a_suggestion() {
        let text = VALID.replace("- setWeight: 20", "- setWieght: 20");
        let mut report = Report::default();
        report.add_file("typo.yaml", &text);
        let messages: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.contains(
                "steps[0].setWieght: unknown field \"setWieght\"; did you mean \"setWeight\"?"
            )),
            "{messages:#?}"
        );
        // The step is then empty, which is an error of its own.
        assert!(
            messages.iter().any(|m| m.contains("a step needs one of")),
            "{messages:#?}"
        );
    }

    #[test]
    fn experiment_template_weights_need_a_router_that_carries_them() {
        let with_router = |router: &str| {
            VALID.replace(
                "      steps:\n      - setWeight: 20\n",
                &format!(
                    "      stableService: web-stable\n      canaryService: web-canary\n      trafficRouting:\n{router}      steps:\n      - setWeight: 20\n      - experiment:\n          templates:\n          - {{name: exp, specRef: canary, weight: 10}}\n"
                ),
            )
        };
        let gateway =
            with_router("        plugins:\n          argoproj-labs/gatewayAPI: {httpRoute: web}\n");
        let mut report = Report::default();
        report.add_file("gateway.yaml", &gateway);
        assert!(report.is_valid(), "{:?}", report.problems);

        let nginx = with_router("        nginx: {stableIngress: web}\n");
        let mut report = Report::default();
        report.add_file("nginx.yaml", &nginx);
        let messages: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.contains(
                "spec.strategy.canary.steps[1].experiment.templates[0].weight: experiment template weights need trafficRouting with SMI, ALB, Istio or the argoproj-labs/gatewayAPI plugin"
            )),
            "{messages:#?}"
        );
    }

    #[test]
    fn yaml_errors_are_problems_of_the_file() {
        let mut report = Report::default();
        report.add_file("broken.yaml", "kind: Rollout\nspec: [\n");
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].to_string().starts_with("broken.yaml:"),
            "{:?}",
            report.problems
        );
    }
}
