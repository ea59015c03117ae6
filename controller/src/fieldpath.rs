//! Field paths into an object, as analysis arguments use them (`valueFrom.fieldRef`):
//! the downward-API forms `metadata.name`, `metadata.labels['app']`,
//! `metadata.annotations['x']`, and dotted paths such as `spec.template.spec.containers[0].image`.

use serde::Serialize;
use serde_json::Value;

/// One step of a path.
#[derive(Debug, PartialEq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// Checks the syntax of a field path.
pub fn check_field_path(path: &str) -> Result<(), String> {
    parse(path).map(|_| ())
}

fn parse(path: &str) -> Result<Vec<Segment>, String> {
    let bad = |why: &str| {
        format!("{path:?} is not a field path ({why}); write e.g. metadata.labels['app']")
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    let mut segments = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            let quote = if rest.starts_with("['") { "']" } else { "\"]" };
            let end = after.find(quote).ok_or_else(|| bad("unclosed ["))?;
            segments.push(Segment::Field(after[..end].to_string()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad("unclosed ["))?;
            let index = after[..end]
                .parse()
                .map_err(|_| bad("index is not a number"))?;
            segments.push(Segment::Index(index));
            rest = &after[end + 1..];
        } else {
            let rest_field = rest.strip_prefix('.').unwrap_or(rest);
            if rest_field.len() != rest.len() && segments.is_empty() {
                return Err(bad("starts with '.'"));
            }
            let end = rest_field.find(['.', '[']).unwrap_or(rest_field.len());
            if end == 0 {
                return Err(bad("empty field name"));
            }
            segments.push(Segment::Field(rest_field[..end].to_string()));
            rest = &rest_field[end..];
        }
    }
    Ok(segments)
}

/// The value at `path` in `object` as text (strings as they are, other values as JSON;
/// a whole label or annotation map as `key="value"` lines, like the downward API), or
/// `None` when the path is malformed or leads nowhere.
pub fn extract<T: Serialize>(object: &T, path: &str) -> Option<String> {
    let segments = parse(path).ok()?;
    let root = serde_json::to_value(object).ok()?;
    let mut node = &root;
    for segment in &segments {
        node = match segment {
            Segment::Field(name) => node.get(name)?,
            Segment::Index(i) => node.get(*i)?,
        };
    }
    let is_label_map = matches!(
        segments.as_slice(),
        [Segment::Field(m), Segment::Field(k)] if m == "metadata" && (k == "labels" || k == "annotations")
    );
    Some(match node {
        Value::String(s) => s.clone(),
        Value::Object(map) if is_label_map => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    serde_json::to_string(v.as_str().unwrap_or("")).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => return None,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_downward_api_and_dotted_paths() {
        let object = serde_json::json!({
            "metadata": {"name": "web", "labels": {"app": "shop", "tier": "front"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "nginx:1"}]}}}
        });
        assert_eq!(extract(&object, "metadata.name").as_deref(), Some("web"));
        assert_eq!(
            extract(&object, "metadata.labels['app']").as_deref(),
            Some("shop")
        );
        assert_eq!(
            extract(&object, "metadata.labels[\"tier\"]").as_deref(),
            Some("front")
        );
        assert_eq!(
            extract(&object, "metadata.labels").as_deref(),
            Some("app=\"shop\"\ntier=\"front\"")
        );
        assert_eq!(extract(&object, "spec.replicas").as_deref(), Some("3"));
        assert_eq!(
            extract(&object, "spec.template.spec.containers[0].image").as_deref(),
            Some("nginx:1")
        );
        assert_eq!(extract(&object, "metadata.labels['missing']"), None);
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in ["", ".a", "a..b", "a[", "a['x", "a[x]"] {
            assert!(check_field_path(bad).is_err(), "{bad:?}");
        }
    }
}
