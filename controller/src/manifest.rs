//! Reading manifests: YAML (or JSON, a subset of it), one or many documents per file, with
//! the line of every field kept so that problems can be reported as `FILE:LINE: PATH: …`.
//!
//! ```text
//!   text ──parse──▶ Document { value: serde_json::Value, lines: path → line }
//!                        │
//!                        └──decode::<Rollout>──▶ Decoded { object, unknown_fields }
//! ```
//!
//! Paths are written the way Kubernetes reports fields: `spec.strategy.canary.steps[0].pause`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// Limits that keep hostile input (deep nesting, alias bombs, huge documents) bounded.
const MAX_DEPTH: usize = 100;
const MAX_NODES: usize = 250_000;
const MAX_DOCUMENTS: usize = 10_000;

/// One document of a manifest file.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file (or `-` for standard input) the document came from.
    pub source: String,
    /// Position of the document in its file, from 0.
    pub index: usize,
    /// The document as JSON, exactly as written (nulls included).
    pub value: Value,
    /// Line (from 1) of each field path; the empty path is the document's first line.
    lines: BTreeMap<String, u32>,
}

impl Document {
    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    pub fn api_version(&self) -> Option<&str> {
        self.value.get("apiVersion").and_then(Value::as_str)
    }

    pub fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }

    /// The line of a field path, or of its closest written ancestor when the field itself is
    /// absent (a missing field is reported at the object that lacks it).
    pub fn line(&self, path: &str) -> Option<u32> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            if path.is_empty() {
                return None;
            }
            path = parent_path(path);
        }
    }

    /// The document's first line.
    pub fn start_line(&self) -> u32 {
        self.lines.get("").copied().unwrap_or(1)
    }

    /// `kind/name` for messages, e.g. `Rollout/canary-demo`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.kind().unwrap_or("<no kind>"),
            self.name().unwrap_or("<no name>")
        )
    }
}

fn parent_path(path: &str) -> &str {
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        return &path[..open];
    }
    match path.rfind('.') {
        Some(dot) => &path[..dot],
        None => "",
    }
}

/// A file that is not valid YAML.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    /// Line of the mistake (from 1), 0 when the parser could not tell.
    pub line: u32,
    pub message: String,
}

/// Parses every document of a YAML or JSON text. Empty documents are skipped.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>, ParseError> {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_documents = MAX_DOCUMENTS;
    options.budget = Some(budget);
    let nodes: Vec<Option<Spanned<Node>>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|error| parse_error(source, &error))?;
    let mut documents = Vec::new();
    for (index, node) in nodes.into_iter().enumerate() {
        let Some(node) = node else { continue };
        if matches!(node.value, Node::Null) {
            continue;
        }
        let mut lines = BTreeMap::new();
        let value = node_to_json(node, String::new(), &mut lines);
        documents.push(Document {
            source: source.to_string(),
            index,
            value,
            lines,
        });
    }
    Ok(documents)
}

fn parse_error(source: &str, error: &serde_saphyr::Error) -> ParseError {
    let line = error.location().map(|l| l.line() as u32).unwrap_or(0);
    // The plain message, without the rendered snippet (the caller prints FILE:LINE).
    let message = match error {
        serde_saphyr::Error::WithSnippet { error, .. } => error.to_string(),
        other => other.to_string(),
    };
    let message = message.lines().next().unwrap_or("invalid YAML").to_string();
    ParseError {
        file: source.to_string(),
        line,
        message,
    }
}

/// A YAML node with the location of each child.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

/// Stack kept free below each nesting level, and the size of a new segment when less is left.
const STACK_RED_ZONE: usize = 128 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        // Every nesting level recurses through the YAML deserializer, with large frames in
        // debug builds: grow the stack on demand so that MAX_DEPTH, not the stack of the
        // calling thread (2 MiB for test and Tokio worker threads), bounds the nesting.
        stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || {
            deserializer.deserialize_any(NodeVisitor)
        })
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(|v| Node::Number(v.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(|v| Node::Number(v.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom(format!("{v} cannot be represented in JSON")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Spanned<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            if entries.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format!("duplicate key {:?}", key.0)));
            }
            entries.push((key.0, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key; JSON only has string keys, so scalars are written as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

fn node_to_json(node: Spanned<Node>, path: String, lines: &mut BTreeMap<String, u32>) -> Value {
    lines.insert(path.clone(), node.referenced.line() as u32);
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Number(n) => Value::Number(n),
        Node::String(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| node_to_json(item, format!("{path}[{i}]"), lines))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                map.insert(key, node_to_json(value, child, lines));
            }
            Value::Object(map)
        }
    }
}

/// A typed object decoded from a document, with the fields the type does not know.
#[derive(Debug)]
pub struct Decoded<T> {
    pub object: T,
    /// Paths of fields that were present but are not part of the type; callers report
    /// them rather than dropping them silently.
    pub unknown_fields: Vec<String>,
}

/// A document that does not fit its type, with the path of the offending field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Decodes a JSON value into `T`, reporting the path of a misfit and every unknown field.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<Decoded<T>, DecodeError> {
    let mut unknown_fields = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown_fields.push(ignored_path(&path));
    let ignored = serde_ignored::Deserializer::new(value, &mut record);
    let object = serde_path_to_error::deserialize(ignored).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        DecodeError {
            path,
            message: error.into_inner().to_string(),
        }
    })?;
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Removes every `null` member of every object: Kubernetes treats a null field as absent.
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_line_of_every_field() {
        let text =
            "apiVersion: v1\nkind: Rollout\nspec:\n  steps:\n  - setWeight: 20\n  - pause: {}\n";
        let docs = parse("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].line("kind"), Some(2));
        assert_eq!(docs[0].line("spec.steps[0].setWeight"), Some(5));
        assert_eq!(docs[0].line("spec.steps[1].pause"), Some(6));
        // An absent field is reported at its closest ancestor.
        assert_eq!(docs[0].line("spec.steps[1].pause.duration"), Some(6));
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "---\nkind: A\n---\n# only a comment\n---\nkind: B\nmetadata:\n  name: b\n";
        let docs = parse("f.yaml", text).unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.kind().unwrap()).collect();
        assert_eq!(kinds, ["A", "B"]);
        assert_eq!(docs[1].line("metadata.name"), Some(8));
        assert_eq!(docs[1].describe(), "B/b");
    }

    #[test]
    fn reports_syntax_errors_with_a_line() {
        let error = parse("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(error.file, "bad.yaml");
        assert!(error.line >= 2, "{error:?}");
    }

    #[test]
    fn rejects_duplicate_keys() {
        let error = parse("dup.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(error.message.contains("duplicate"), "{error:?}");
    }

    #[test]
    fn bounds_nesting_depth() {
        let text = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse("deep.yaml", &text).is_err());
    }

    #[test]
    fn decode_reports_unknown_fields_and_misfits() {
        #[derive(Debug, serde::Deserialize)]
        struct Step {
            #[serde(rename = "setWeight")]
            _set_weight: Option<i32>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Spec {
            _steps: Vec<Step>,
        }
        let value = serde_json::json!({"_steps": [{"setWeight": 1, "setWieght": 2}]});
        let decoded = decode::<Spec>(&value).unwrap();
        assert_eq!(decoded.unknown_fields, ["_steps[0].setWieght"]);

        let value = serde_json::json!({"_steps": [{"setWeight": "x"}]});
        let error = decode::<Spec>(&value).unwrap_err();
        assert_eq!(error.path, "_steps[0].setWeight");
    }
}
