//! Template arguments: merging the args a Rollout (or user) passes into the args templates
//! declare, reading `fieldRef` paths off the owning object, and substituting
//! `{{args.NAME}}` placeholders into a metric.
//!
//! Like Argo, substitution happens when a run measures, not when it is created: the run keeps
//! its placeholders and its `args`, and every string of the metric (provider fields,
//! conditions, Job spec, int-or-string limits) is resolved just before the measurement, with
//! Secret values read at that moment and never written back.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Argument, Metric};
use crate::expr::Value;

/// What can go wrong with arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error(
        "argument {name:?} has no value: give it a `value` (or `valueFrom`) where the template is used, or a default in the template"
    )]
    Unresolved { name: String },
    #[error(
        "argument {name:?} is declared more than once with different values ({first:?} and {second:?})"
    )]
    Conflicting {
        name: String,
        first: String,
        second: String,
    },
    #[error("{text:?} uses {{{{{tag}}}}}, but no argument of that name is defined")]
    UnknownPlaceholder { tag: String, text: String },
    #[error("{text:?} opens a placeholder with {{{{ that is never closed with }}}}")]
    UnclosedPlaceholder { text: String },
    #[error("fieldRef {path:?}: {reason}")]
    FieldPath { path: String, reason: String },
    #[error("metric {metric:?} cannot be read back after resolving its arguments: {reason}")]
    Metric { metric: String, reason: String },
}

/// Merges the args of the flattened templates (in template order) with the incoming args of
/// the Rollout or user: an incoming `value` or `valueFrom` replaces the template's; incoming
/// args no template declares are dropped (as Argo does). Every merged arg must end up with a
/// value or a `valueFrom`, otherwise the error names the first one that has neither.
pub fn merge_args(
    template_args: Vec<Argument>,
    incoming: &[Argument],
) -> Result<Vec<Argument>, ArgError> {
    let mut merged = template_args;
    for arg in incoming {
        if let Some(slot) = merged.iter_mut().find(|a| a.name == arg.name) {
            if arg.value.is_some() {
                slot.value = arg.value.clone();
                slot.value_from = None;
            } else if arg.value_from.is_some() {
                slot.value_from = arg.value_from.clone();
                slot.value = None;
            }
        }
    }
    if let Some(arg) = merged
        .iter()
        .find(|a| a.value.is_none() && a.value_from.is_none())
    {
        return Err(ArgError::Unresolved {
            name: arg.name.clone(),
        });
    }
    Ok(merged)
}

/// Combines the args several templates declare. The same name may appear in several templates;
/// a declaration with a value wins over one without, and two different values are an error.
pub fn flatten_template_args<'a>(
    declared: impl IntoIterator<Item = &'a Argument>,
) -> Result<Vec<Argument>, ArgError> {
    let mut combined: Vec<Argument> = Vec::new();
    for arg in declared {
        match combined.iter_mut().find(|a| a.name == arg.name) {
            Some(previous) => match (&previous.value, &arg.value) {
                (Some(first), Some(second)) if first != second => {
                    return Err(ArgError::Conflicting {
                        name: arg.name.clone(),
                        first: first.clone(),
                        second: second.clone(),
                    });
                }
                (None, _) => *previous = arg.clone(),
                _ => {}
            },
            None => combined.push(arg.clone()),
        }
    }
    Ok(combined)
}

/// Argument values by name, ready for substitution.
pub type ArgValues = BTreeMap<String, String>;

/// The values of args that carry a literal `value`; `valueFrom` args must be read by the
/// caller (Secrets at measurement time) and inserted. Errors on an arg with neither.
pub fn literal_values(args: &[Argument]) -> Result<ArgValues, ArgError> {
    let mut values = ArgValues::new();
    for arg in args {
        match (&arg.value, &arg.value_from) {
            (Some(value), _) => {
                values.insert(arg.name.clone(), value.clone());
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err(ArgError::Unresolved {
                    name: arg.name.clone(),
                });
            }
        }
    }
    Ok(values)
}

/// Substitutes `{{args.NAME}}` (spaces inside the braces allowed) in one text. Any other
/// placeholder, or an arg without a value, is an error naming it.
pub fn substitute(text: &str, values: &ArgValues) -> Result<String, ArgError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after_open = &rest[start + 2..];
        let Some(len) = after_open.find("}}") else {
            return Err(ArgError::UnclosedPlaceholder {
                text: text.to_string(),
            });
        };
        let tag = &after_open[..len];
        let value = tag
            .trim()
            .strip_prefix("args.")
            .and_then(|name| values.get(name))
            .ok_or_else(|| ArgError::UnknownPlaceholder {
                tag: tag.to_string(),
                text: text.to_string(),
            })?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &after_open[len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves every placeholder in a metric: each string anywhere in it (map keys included), as
/// Argo resolves the metric's whole JSON.
pub fn resolve_metric(metric: &Metric, values: &ArgValues) -> Result<Metric, ArgError> {
    let json = serde_json::to_value(metric).map_err(|e| ArgError::Metric {
        metric: metric.name.clone(),
        reason: e.to_string(),
    })?;
    let resolved = resolve_json(json, values)?;
    serde_json::from_value(resolved).map_err(|e| ArgError::Metric {
        metric: metric.name.clone(),
        reason: e.to_string(),
    })
}

fn resolve_json(
    json: serde_json::Value,
    values: &ArgValues,
) -> Result<serde_json::Value, ArgError> {
    use serde_json::Value as J;
    Ok(match json {
        J::String(s) => J::String(substitute(&s, values)?),
        J::Array(items) => J::Array(
            items
                .into_iter()
                .map(|item| resolve_json(item, values))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| Ok((substitute(&k, values)?, resolve_json(v, values)?)))
                .collect::<Result<_, ArgError>>()?,
        ),
        other => other,
    })
}

/// Reads a `fieldRef.fieldPath` off an object (its JSON), as Argo does for a Rollout's
/// analysis args: `metadata.name`, `metadata.namespace`, `metadata.uid`,
/// `metadata.labels['app']`, `metadata.annotations['x']`, `metadata.labels` (all, one
/// `key="value"` per line); any other path (`spec.template.spec.containers[0].image`) is walked
/// through maps and lists and must end at a string, number or bool.
pub fn field_path_value(object: &serde_json::Value, path: &str) -> Result<String, ArgError> {
    let fail = |reason: &str| ArgError::FieldPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if let Some(meta_path) = path.strip_prefix("metadata.") {
        let metadata = &object["metadata"];
        if let Some((map, key)) = subscript(meta_path) {
            if map != "labels" && map != "annotations" {
                return Err(fail(
                    "only metadata.labels['…'] and metadata.annotations['…'] take a key",
                ));
            }
            return Ok(metadata[map][key].as_str().unwrap_or_default().to_string());
        }
        return match meta_path {
            "name" | "namespace" | "uid" | "generateName" | "resourceVersion" => {
                Ok(metadata[meta_path].as_str().unwrap_or_default().to_string())
            }
            "labels" | "annotations" => {
                let mut lines = BTreeSet::new();
                if let Some(map) = metadata[meta_path].as_object() {
                    for (k, v) in map {
                        let v = v.as_str().unwrap_or_default();
                        lines.insert(format!("{k}={}", serde_json::Value::from(v)));
                    }
                }
                Ok(lines.into_iter().collect::<Vec<_>>().join("\n"))
            }
            _ => Err(fail("unsupported metadata field")),
        };
    }
    let mut current = object;
    for section in path.split(['.', '[', ']']).filter(|s| !s.is_empty()) {
        current = match current {
            serde_json::Value::Array(items) => {
                let index: usize = section
                    .parse()
                    .map_err(|_| fail(&format!("invalid index '{section}'")))?;
                items
                    .get(index)
                    .ok_or_else(|| fail(&format!("index {index} out of range")))?
            }
            serde_json::Value::Object(map) => map
                .get(section)
                .ok_or_else(|| fail("no such field on the object"))?,
            _ => return Err(fail("no such field on the object")),
        };
    }
    match current {
        serde_json::Value::Null => Err(fail("no such field on the object")),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            Err(fail("the path must end at a string, number or bool"))
        }
        primitive => Ok(Value::from(primitive).to_string()),
    }
}

/// `labels['app']` → (`labels`, `app`).
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (map, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
        .unwrap_or(key);
    Some((map, key))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    use super::*;
    use crate::api::{
        MetricProvider, PrometheusMetric, SecretKeyRef, ValueFrom, WebMetric, WebMetricHeader,
    };

    fn arg(name: &str, value: Option<&str>) -> Argument {
        Argument {
            name: name.into(),
            value: value.map(str::to_string),
            value_from: None,
        }
    }

    fn secret_arg(name: &str) -> Argument {
        Argument {
            name: name.into(),
            value: None,
            value_from: Some(ValueFrom {
                secret_key_ref: Some(SecretKeyRef {
                    name: "s".into(),
                    key: "k".into(),
                }),
                field_ref: None,
            }),
        }
    }

    #[test]
    fn incoming_args_override_defaults_and_fill_required() {
        let merged = merge_args(
            vec![arg("service", None), arg("url", Some("http://default"))],
            &[
                arg("service", Some("web")),
                arg("url", Some("http://other")),
                arg("unused", Some("dropped")),
            ],
        )
        .unwrap();
        assert_eq!(
            merged,
            [
                arg("service", Some("web")),
                arg("url", Some("http://other"))
            ]
        );
    }

    #[test]
    fn an_arg_without_value_is_an_error_naming_it() {
        let err =
            merge_args(vec![arg("a", Some("1")), arg("service-name", None)], &[]).unwrap_err();
        assert_eq!(
            err,
            ArgError::Unresolved {
                name: "service-name".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("argument \"service-name\" has no value")
        );
    }

    #[test]
    fn value_from_counts_as_a_value_and_replaces_a_default() {
        let merged =
            merge_args(vec![arg("token", Some("default"))], &[secret_arg("token")]).unwrap();
        assert_eq!(merged, [secret_arg("token")]);
        assert_eq!(
            merge_args(vec![secret_arg("t")], &[]).unwrap(),
            [secret_arg("t")]
        );
    }

    #[test]
    fn flattening_template_args() {
        let flat = flatten_template_args(&[
            arg("a", None),
            arg("b", Some("1")),
            arg("a", Some("x")),
            arg("b", None),
            arg("b", Some("1")),
        ])
        .unwrap();
        assert_eq!(flat, [arg("a", Some("x")), arg("b", Some("1"))]);
        let err = flatten_template_args(&[arg("a", Some("1")), arg("a", Some("2"))]).unwrap_err();
        assert!(matches!(err, ArgError::Conflicting { .. }), "{err}");
    }

    #[test]
    fn substitution() {
        let values = ArgValues::from([
            ("service".to_string(), "web".to_string()),
            ("quote".to_string(), "a\"b\nc".to_string()),
        ]);
        assert_eq!(
            substitute("no placeholders", &values).unwrap(),
            "no placeholders"
        );
        assert_eq!(
            substitute("svc={{args.service}}, {{ args.service }}!", &values).unwrap(),
            "svc=web, web!"
        );
        assert_eq!(substitute("{{args.quote}}", &values).unwrap(), "a\"b\nc");
        let err = substitute("x {{args.missing}}", &values).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"x {{args.missing}}\" uses {{args.missing}}, but no argument of that name is defined"
        );
        assert!(matches!(
            substitute("{{inputs.x}}", &values),
            Err(ArgError::UnknownPlaceholder { .. })
        ));
        assert!(matches!(
            substitute("{{args.service", &values),
            Err(ArgError::UnclosedPlaceholder { .. })
        ));
    }

    #[test]
    fn a_metric_is_resolved_everywhere() {
        let metric = Metric {
            name: "{{args.service}}-errors".into(),
            interval: Some("{{args.interval}}".into()),
            count: Some(IntOrString::String("{{args.count}}".into())),
            success_condition: Some("result[0] < {{args.threshold}}".into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    query: Some("rate(x{service=\"{{args.service}}\"}[1m])".into()),
                    ..Default::default()
                }),
                web: Some(WebMetric {
                    url: "http://{{args.service}}/".into(),
                    headers: Some(vec![WebMetricHeader {
                        key: "X-{{args.service}}".into(),
                        value: "{{args.threshold}}".into(),
                    }]),
                    json_body: Some(json!({"{{args.service}}": ["{{args.count}}", 1]})),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let values = ArgValues::from([
            ("service".to_string(), "web".to_string()),
            ("interval".to_string(), "10s".to_string()),
            ("count".to_string(), "3".to_string()),
            ("threshold".to_string(), "0.01".to_string()),
        ]);
        let resolved = resolve_metric(&metric, &values).unwrap();
        assert_eq!(resolved.name, "web-errors");
        assert_eq!(resolved.interval.as_deref(), Some("10s"));
        assert_eq!(resolved.count, Some(IntOrString::String("3".into())));
        assert_eq!(
            resolved.success_condition.as_deref(),
            Some("result[0] < 0.01")
        );
        assert_eq!(
            resolved.provider.prometheus.unwrap().query.as_deref(),
            Some("rate(x{service=\"web\"}[1m])")
        );
        let web = resolved.provider.web.unwrap();
        assert_eq!(web.url, "http://web/");
        assert_eq!(web.headers.unwrap()[0].key, "X-web");
        assert_eq!(web.json_body, Some(json!({"web": ["3", 1]})));
    }

    #[test]
    fn literal_values_skip_value_from_and_reject_missing() {
        let values = literal_values(&[arg("a", Some("1")), secret_arg("t")]).unwrap();
        assert_eq!(
            values,
            ArgValues::from([("a".to_string(), "1".to_string())])
        );
        assert!(literal_values(&[arg("a", None)]).is_err());
    }

    #[test]
    fn field_paths() {
        let rollout = json!({
            "metadata": {
                "name": "guestbook",
                "namespace": "prod",
                "uid": "u-1",
                "labels": {"app": "guestbook", "tier": "web"},
                "annotations": {"team": "a"}
            },
            "spec": {
                "replicas": 5,
                "paused": false,
                "template": {"spec": {"containers": [{"image": "guestbook:2"}]}}
            }
        });
        let get = |path: &str| field_path_value(&rollout, path);
        assert_eq!(get("metadata.name").unwrap(), "guestbook");
        assert_eq!(get("metadata.namespace").unwrap(), "prod");
        assert_eq!(get("metadata.labels['app']").unwrap(), "guestbook");
        assert_eq!(get("metadata.labels[\"tier\"]").unwrap(), "web");
        assert_eq!(get("metadata.labels['missing']").unwrap(), "");
        assert_eq!(get("metadata.annotations['team']").unwrap(), "a");
        assert_eq!(
            get("metadata.labels").unwrap(),
            "app=\"guestbook\"\ntier=\"web\""
        );
        assert_eq!(get("spec.replicas").unwrap(), "5");
        assert_eq!(get("spec.paused").unwrap(), "false");
        assert_eq!(
            get("spec.template.spec.containers[0].image").unwrap(),
            "guestbook:2"
        );
        for (path, reason) in [
            (
                "spec.template.spec.containers[1].image",
                "index 1 out of range",
            ),
            ("spec.template.spec.containers[x]", "invalid index 'x'"),
            ("spec.template", "must end at a string"),
            ("spec.nothing", "no such field"),
            ("metadata.finalizers", "unsupported metadata field"),
            ("metadata.spec['x']", "only metadata.labels"),
        ] {
            let err = get(path).unwrap_err();
            assert!(err.to_string().contains(reason), "{path}: {err}");
        }
    }
}
