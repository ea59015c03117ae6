//! Rendering a directory of plain manifests into objects, each remembering its file and line.
//!
//! Argo CD's directory source: `.yaml`, `.yml` and `.json` files under `source.path`
//! (subdirectories with `directory.recurse`), filtered by the `include` and `exclude` globs
//! (matched against the path relative to `source.path`; `*` crosses `/`, `{a,b}` alternates),
//! multi-document YAML, `kind: List` expanded. Every problem is collected, with its file and
//! line, so one sync attempt reports them all; any problem fails the render as a whole.

use std::fmt;

use globset::{Glob, GlobMatcher};
use serde_json::{Map, Value};

/// Documents one file may hold: a generated file gone wrong beyond this is refused whole
/// rather than parsed document by document.
pub const MAX_DOCUMENTS_PER_FILE: usize = 10_000;
/// Problems collected before the render stops reading further files (the condition shows the
/// first few; the rest only cost time and memory).
pub const MAX_ERRORS: usize = 100;

/// A file read from the repository, its path relative to the application's `source.path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to `source.path`, `/`-separated.
    pub path: String,
    /// Contents.
    pub content: Vec<u8>,
}

/// `spec.source.directory`, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirectoryOptions {
    /// Read subdirectories too.
    pub recurse: bool,
    /// Only files matching this glob.
    pub include: Option<String>,
    /// Never files matching this glob.
    pub exclude: Option<String>,
}

/// One object from Git and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The object as written.
    pub object: Map<String, Value>,
    /// File, relative to `source.path`.
    pub file: String,
    /// 1-based line where the object starts.
    pub line: usize,
}

impl Manifest {
    /// `file:line`, for messages.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A problem in the source, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderError {
    /// File (or the spec field at fault).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What kind of source a directory is, by the files at its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceType {
    /// Plain manifests.
    Directory,
    /// A `kustomization.yaml` is present.
    Kustomize,
    /// A `Chart.yaml` is present.
    Helm,
}

impl SourceType {
    /// Argo CD's name for the source type.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Directory => "Directory",
            SourceType::Kustomize => "Kustomize",
            SourceType::Helm => "Helm",
        }
    }
}

/// Detects Kustomize and Helm sources the way Argo CD does: by their marker file at the root.
pub fn detect_source_type(files: &[SourceFile]) -> SourceType {
    let at_root = |name: &str| files.iter().any(|f| f.path == name);
    if at_root("kustomization.yaml") || at_root("kustomization.yml") || at_root("Kustomization") {
        SourceType::Kustomize
    } else if at_root("Chart.yaml") {
        SourceType::Helm
    } else {
        SourceType::Directory
    }
}

/// Renders the files into objects, or returns every problem found.
pub fn render(
    files: &[SourceFile],
    options: &DirectoryOptions,
) -> Result<Vec<Manifest>, Vec<RenderError>> {
    let mut errors = Vec::new();
    let include = compile_glob(
        "spec.source.directory.include",
        options.include.as_deref(),
        &mut errors,
    );
    let exclude = compile_glob(
        "spec.source.directory.exclude",
        options.exclude.as_deref(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut manifests = Vec::new();
    let mut selected: Vec<&SourceFile> = files
        .iter()
        .filter(|f| options.recurse || !f.path.contains('/'))
        .filter(|f| is_manifest_file(&f.path))
        .filter(|f| exclude.as_ref().is_none_or(|g| !g.is_match(&f.path)))
        .filter(|f| include.as_ref().is_none_or(|g| g.is_match(&f.path)))
        .collect();
    selected.sort_by(|a, b| a.path.cmp(&b.path));
    for file in selected {
        if errors.len() >= MAX_ERRORS {
            errors.push(RenderError {
                file: file.path.clone(),
                line: None,
                message: format!(
                    "not read, nor the files after it: {} problems found already",
                    errors.len()
                ),
            });
            break;
        }
        let Ok(text) = std::str::from_utf8(&file.content) else {
            errors.push(RenderError {
                file: file.path.clone(),
                line: None,
                message: "is not UTF-8 text; exclude it with spec.source.directory.exclude".into(),
            });
            continue;
        };
        if file.path.ends_with(".json") {
            parse_json(&file.path, text, &mut manifests, &mut errors);
        } else {
            parse_yaml(&file.path, text, &mut manifests, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

fn is_manifest_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn compile_glob(
    field: &str,
    pattern: Option<&str>,
    errors: &mut Vec<RenderError>,
) -> Option<GlobMatcher> {
    let pattern = pattern.filter(|p| !p.is_empty())?;
    match Glob::new(pattern) {
        Ok(glob) => Some(glob.compile_matcher()),
        Err(error) => {
            errors.push(RenderError {
                file: field.to_owned(),
                line: None,
                message: format!("invalid glob {pattern:?}: {error}"),
            });
            None
        }
    }
}

fn parse_json(file: &str, text: &str, out: &mut Vec<Manifest>, errors: &mut Vec<RenderError>) {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => accept_document(file, 1, value, out, errors),
        Err(error) => errors.push(RenderError {
            file: file.to_owned(),
            line: Some(error.line()),
            message: format!("invalid JSON: {error}"),
        }),
    }
}

/// A YAML document of a multi-document file: its text and the line it starts on.
struct YamlDocument<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits a YAML stream at `---` (and after `...`) lines, keeping each document's line offset
/// so errors point at the line in the file rather than in the document.
fn split_documents(text: &str) -> Vec<YamlDocument<'_>> {
    let mut documents = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut ended = false;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_start && index > 0 {
            if !ended {
                documents.push(YamlDocument {
                    text: &text[start..offset],
                    first_line: start_line,
                });
            }
            start = offset;
            start_line = index + 1;
            ended = false;
        } else if is_end && !ended {
            documents.push(YamlDocument {
                text: &text[start..offset],
                first_line: start_line,
            });
            ended = true;
        }
        offset += line.len();
    }
    if !ended {
        documents.push(YamlDocument {
            text: &text[start..],
            first_line: start_line,
        });
    }
    documents
}

/// The line of the first content (not blank, comment or `---`) in a document.
fn content_line(document: &YamlDocument<'_>) -> usize {
    document
        .text
        .lines()
        .position(|line| {
            let t = line.trim();
            !(t.is_empty() || t.starts_with('#') || t == "---")
        })
        .map_or(document.first_line, |i| document.first_line + i)
}

fn parse_yaml(file: &str, text: &str, out: &mut Vec<Manifest>, errors: &mut Vec<RenderError>) {
    let documents = split_documents(text);
    if documents.len() > MAX_DOCUMENTS_PER_FILE {
        errors.push(RenderError {
            file: file.to_owned(),
            line: None,
            message: format!(
                "holds {} YAML documents; at most {MAX_DOCUMENTS_PER_FILE} are read from one file",
                documents.len()
            ),
        });
        return;
    }
    for document in documents {
        let has_content = document.text.lines().any(|line| {
            let t = line.trim();
            !(t.is_empty() || t.starts_with('#') || t == "---" || t.starts_with("--- #"))
        });
        if !has_content {
            continue;
        }
        match serde_saphyr::from_str::<Value>(document.text) {
            Ok(value) => accept_document(file, content_line(&document), value, out, errors),
            Err(error) => {
                let line = error
                    .location()
                    .and_then(|l| usize::try_from(l.line()).ok())
                    .map(|l| document.first_line + l.saturating_sub(1));
                errors.push(RenderError {
                    file: file.to_owned(),
                    line: line.or(Some(document.first_line)),
                    message: format!(
                        "invalid YAML: {}",
                        first_line_of(&error.without_snippet().to_string())
                    ),
                });
            }
        }
    }
}

fn first_line_of(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

fn accept_document(
    file: &str,
    line: usize,
    value: Value,
    out: &mut Vec<Manifest>,
    errors: &mut Vec<RenderError>,
) {
    let mut fail = |message: String| {
        errors.push(RenderError {
            file: file.to_owned(),
            line: Some(line),
            message,
        });
    };
    let object = match value {
        Value::Null => return,
        Value::Object(object) => object,
        other => {
            fail(format!(
                "is not a Kubernetes object (found {}); exclude the file with spec.source.directory.exclude",
                kind_of_value(&other)
            ));
            return;
        }
    };
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.ends_with("List") && object.get("items").is_some_and(Value::is_array) {
        if let Some(Value::Array(items)) = object.get("items") {
            for item in items {
                accept_document(file, line, item.clone(), out, errors);
            }
        }
        return;
    }
    match check_object(&object) {
        Ok(()) => out.push(Manifest {
            object,
            file: file.to_owned(),
            line,
        }),
        Err(message) => fail(message),
    }
}

fn check_object(object: &Map<String, Value>) -> Result<(), String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(
            "is not a Kubernetes object: apiVersion and kind are required \
                    (exclude non-manifest files with spec.source.directory.exclude)"
                .into(),
        );
    }
    let meta = object.get("metadata").and_then(Value::as_object);
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        let generated = meta.is_some_and(|m| m.contains_key("generateName"));
        return Err(if generated {
            format!(
                "{kind} uses metadata.generateName, which needs a hook; give it a metadata.name"
            )
        } else {
            format!("{kind} has no metadata.name")
        });
    }
    Ok(())
}

fn kind_of_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
        }
    }

    fn names(manifests: &[Manifest]) -> Vec<String> {
        manifests
            .iter()
            .map(|m| {
                format!(
                    "{}@{}",
                    m.object["metadata"]["name"].as_str().unwrap_or("?"),
                    m.origin()
                )
            })
            .collect()
    }

    const CONFIG_MAPS: &str = "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  x: \"1\"\n...\n";

    #[test]
    fn multi_document_yaml_keeps_file_and_line() {
        let rendered = render(
            &[file("cm.yaml", CONFIG_MAPS)],
            &DirectoryOptions::default(),
        )
        .expect("renders");
        assert_eq!(names(&rendered), ["a@cm.yaml:3", "b@cm.yaml:10"]);
        assert_eq!(rendered[1].object["data"]["x"], "1");
    }

    #[test]
    fn json_and_lists_are_read() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s1"}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s2"}}]}"#;
        let rendered =
            render(&[file("svc.json", json)], &DirectoryOptions::default()).expect("renders");
        assert_eq!(names(&rendered), ["s1@svc.json:1", "s2@svc.json:1"]);
    }

    #[test]
    fn recurse_include_and_exclude_select_files() {
        let cm =
            |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        let files = [
            file("a.yaml", &cm("a")),
            file("notes.txt", "not yaml: ["),
            file("sub/b.yml", &cm("b")),
            file("sub/deep/c.yaml", &cm("c")),
            file("sub/values.yaml", "replicas: 3\n"),
        ];
        let flat = render(&files, &DirectoryOptions::default()).expect("renders");
        assert_eq!(names(&flat), ["a@a.yaml:1"]);
        let options = DirectoryOptions {
            recurse: true,
            include: Some("{a.yaml,sub/*}".into()),
            exclude: Some("*values.yaml".into()),
        };
        let deep = render(&files, &options).expect("renders");
        assert_eq!(
            names(&deep),
            ["a@a.yaml:1", "b@sub/b.yml:1", "c@sub/deep/c.yaml:1"]
        );
    }

    #[test]
    fn yaml_errors_name_file_and_line_and_all_are_reported() {
        let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
        let files = [
            file("a.yaml", broken),
            file("b.yaml", "- just\n- a list\n"),
            file("c.yaml", "kind: X\n"),
        ];
        let errors = render(&files, &DirectoryOptions::default()).expect_err("fails");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0].file, "a.yaml");
        let line = errors[0].line.expect("line");
        assert!(
            (9..=10).contains(&line),
            "line {line} should point into the second document: {}",
            errors[0]
        );
        assert!(
            errors[0].message.starts_with("invalid YAML"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1]
                .to_string()
                .starts_with("b.yaml:1: is not a Kubernetes object (found a list)")
        );
        assert!(
            errors[2]
                .to_string()
                .contains("apiVersion and kind are required")
        );
    }

    #[test]
    fn duplicate_keys_and_missing_names_are_errors() {
        let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n";
        let errors =
            render(&[file("d.yaml", dup)], &DirectoryOptions::default()).expect_err("fails");
        assert!(errors[0].message.contains("invalid YAML"), "{}", errors[0]);
        let nameless = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n";
        let errors =
            render(&[file("j.yaml", nameless)], &DirectoryOptions::default()).expect_err("fails");
        assert!(errors[0].message.contains("generateName"), "{}", errors[0]);
    }

    #[test]
    fn invalid_glob_names_the_field() {
        let options = DirectoryOptions {
            include: Some("{unclosed".into()),
            ..Default::default()
        };
        let errors = render(&[], &options).expect_err("fails");
        assert_eq!(errors[0].file, "spec.source.directory.include");
    }

    #[test]
    fn kustomize_and_helm_are_detected() {
        assert_eq!(
            detect_source_type(&[file("kustomization.yaml", "")]),
            SourceType::Kustomize
        );
        assert_eq!(
            detect_source_type(&[file("Chart.yaml", "")]),
            SourceType::Helm
        );
        assert_eq!(
            detect_source_type(&[file("sub/Chart.yaml", "")]),
            SourceType::Directory
        );
    }
}
