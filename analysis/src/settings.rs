//! A metric's scheduling and limit fields, read into numbers and durations with Argo's
//! defaults applied. The verdict and scheduling rules work on [`MetricSettings`], never on the
//! raw int-or-string fields.
//!
//! | field                     | absent means                    | special values           |
//! |---------------------------|---------------------------------|--------------------------|
//! | `interval`                | measure once (unless `count`)   |                          |
//! | `initialDelay`            | no delay                        |                          |
//! | `count`                   | 1 without interval, else ∞      | 0 = as if absent         |
//! | `failureLimit`            | 0                               | −1 = failures never fail |
//! | `inconclusiveLimit`       | 0                               |                          |
//! | `consecutiveErrorLimit`   | 4                               |                          |
//! | `consecutiveSuccessLimit` | 0 (disabled)                    |                          |

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::Metric;
use crate::duration::parse_go_duration;

/// Consecutive provider errors tolerated when `consecutiveErrorLimit` is not set.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;

/// The typed view of one metric's scheduling and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSettings {
    pub interval: Option<Duration>,
    pub initial_delay: Option<Duration>,
    /// How many completed (non-error) measurements end the metric; `None` = until terminated.
    pub effective_count: Option<i64>,
    /// `failureLimit`; −1 disables it.
    pub failure_limit: i64,
    pub inconclusive_limit: i64,
    pub consecutive_error_limit: i64,
    /// 0 disables it.
    pub consecutive_success_limit: i64,
}

impl MetricSettings {
    /// Whether failed measurements can fail the metric (`failureLimit` ≥ 0).
    pub fn failure_limit_applies(&self) -> bool {
        self.failure_limit >= 0
    }

    /// Whether enough consecutive successes end the metric (`consecutiveSuccessLimit` > 0).
    pub fn consecutive_success_limit_applies(&self) -> bool {
        self.consecutive_success_limit > 0
    }
}

/// One field that could not be read: its path under the metric (`interval`, `count`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Reads a metric's settings. Every unreadable field is reported, not just the first.
/// A field still holding an `{{args.…}}` placeholder is unreadable: callers resolve args first.
pub fn metric_settings(metric: &Metric) -> Result<MetricSettings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut duration = |field: &'static str, value: &Option<String>| -> Option<Duration> {
        let text = value.as_deref().filter(|s| !s.is_empty())?;
        match parse_go_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(FieldError {
                    field,
                    message: e.to_string(),
                });
                None
            }
        }
    };
    let interval = duration("interval", &metric.interval);
    let initial_delay = duration("initialDelay", &metric.initial_delay);
    let mut int = |field: &'static str, value: &Option<IntOrString>| -> Option<i64> {
        match int_or_string(value.as_ref()?) {
            Ok(n) => Some(n),
            Err(message) => {
                errors.push(FieldError { field, message });
                None
            }
        }
    };
    let count = int("count", &metric.count);
    let failure_limit = int("failureLimit", &metric.failure_limit);
    let inconclusive_limit = int("inconclusiveLimit", &metric.inconclusive_limit);
    let consecutive_error_limit = int("consecutiveErrorLimit", &metric.consecutive_error_limit);
    let consecutive_success_limit =
        int("consecutiveSuccessLimit", &metric.consecutive_success_limit);
    if !errors.is_empty() {
        return Err(errors);
    }
    let effective_count = match count {
        Some(n) if n != 0 => Some(n),
        _ if interval.is_none() => Some(1),
        _ => None,
    };
    Ok(MetricSettings {
        interval,
        initial_delay,
        effective_count,
        failure_limit: failure_limit.unwrap_or(0),
        inconclusive_limit: inconclusive_limit.unwrap_or(0),
        consecutive_error_limit: consecutive_error_limit.unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        consecutive_success_limit: consecutive_success_limit.unwrap_or(0),
    })
}

/// Reads an int-or-string field: an integer, or a string holding one (what `{{args.n}}`
/// becomes once resolved).
pub fn int_or_string(value: &IntOrString) -> Result<i64, String> {
    match value {
        IntOrString::Int(n) => Ok(i64::from(*n)),
        IntOrString::String(s) if has_placeholder(s) => Err(format!(
            "{s:?} still holds an argument placeholder; it is resolved when the run measures"
        )),
        IntOrString::String(s) => s
            .trim()
            .parse::<i32>()
            .map(i64::from)
            .map_err(|_| format!("{s:?} is not an integer")),
    }
}

/// Whether a text holds a `{{…}}` placeholder.
pub fn has_placeholder(text: &str) -> bool {
    text.find("{{")
        .is_some_and(|start| text[start..].contains("}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric() -> Metric {
        Metric {
            name: "m".into(),
            ..Metric::default()
        }
    }

    #[test]
    fn defaults_follow_argo() {
        let s = metric_settings(&metric()).unwrap();
        assert_eq!(
            s,
            MetricSettings {
                interval: None,
                initial_delay: None,
                effective_count: Some(1),
                failure_limit: 0,
                inconclusive_limit: 0,
                consecutive_error_limit: 4,
                consecutive_success_limit: 0,
            }
        );
        assert!(s.failure_limit_applies());
        assert!(!s.consecutive_success_limit_applies());
    }

    #[test]
    fn effective_count() {
        let with = |interval: Option<&str>, count: Option<IntOrString>| {
            let m = Metric {
                interval: interval.map(str::to_string),
                count,
                ..metric()
            };
            metric_settings(&m).unwrap().effective_count
        };
        assert_eq!(with(None, None), Some(1));
        assert_eq!(with(None, Some(IntOrString::Int(0))), Some(1));
        assert_eq!(with(Some("10s"), None), None);
        assert_eq!(with(Some("10s"), Some(IntOrString::Int(0))), None);
        assert_eq!(with(Some("10s"), Some(IntOrString::Int(3))), Some(3));
        assert_eq!(
            with(Some("10s"), Some(IntOrString::String("5".into()))),
            Some(5)
        );
    }

    #[test]
    fn unreadable_fields_are_all_reported() {
        let m = Metric {
            interval: Some("5".into()),
            initial_delay: Some("x".into()),
            count: Some(IntOrString::String("{{args.count}}".into())),
            failure_limit: Some(IntOrString::String("three".into())),
            ..metric()
        };
        let errors = metric_settings(&m).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["interval", "initialDelay", "count", "failureLimit"]
        );
        assert!(errors[2].message.contains("placeholder"));
        assert!(errors[3].message.contains("\"three\" is not an integer"));
    }

    #[test]
    fn placeholders() {
        assert!(has_placeholder("{{args.x}}"));
        assert!(has_placeholder("a {{ args.x }} b"));
        assert!(!has_placeholder("{{"));
        assert!(!has_placeholder("}} {{"));
        assert!(!has_placeholder("plain"));
    }
}
