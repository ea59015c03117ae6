//! AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun rules: Argo's metric rules (from
//! `ramp_analysis::validate`), plus arguments, dry-run and retention rules, and the pod
//! template of Job metrics.

use std::collections::BTreeSet;

use crate::api::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, DryRun, MeasurementRetention, Metric,
};

use super::pod::check_pod_template;
use super::{FieldError, FieldErrors};

/// Problems with a template's spec (paths from the object root, `spec.…`).
pub fn validate_analysis_template(spec: &AnalysisTemplateSpec) -> Vec<FieldError> {
    let mut errors = FieldErrors::default();
    let metrics = spec.metrics.as_deref().unwrap_or_default();
    let composed = spec.templates.as_ref().is_some_and(|t| !t.is_empty());
    // A template made only of other templates has no metrics of its own.
    if !(metrics.is_empty() && composed) {
        check_metrics(metrics, &mut errors);
    }
    for (i, reference) in spec.templates.iter().flatten().enumerate() {
        if reference.template_name.as_deref().is_none_or(str::is_empty) {
            errors.push(
                format!("spec.templates[{i}].templateName"),
                "required: name the template to include",
            );
        }
    }
    check_args(spec.args.as_deref(), false, &mut errors);
    check_rules(
        spec.dry_run.as_deref(),
        spec.measurement_retention.as_deref(),
        &mut errors,
    );
    errors.into_vec()
}

/// Problems with a run's spec. Unlike templates, every argument must have a value.
pub fn validate_analysis_run(spec: &AnalysisRunSpec) -> Vec<FieldError> {
    let mut errors = FieldErrors::default();
    check_metrics(&spec.metrics, &mut errors);
    check_args(spec.args.as_deref(), true, &mut errors);
    check_rules(
        spec.dry_run.as_deref(),
        spec.measurement_retention.as_deref(),
        &mut errors,
    );
    errors.into_vec()
}

fn check_metrics(metrics: &[Metric], errors: &mut FieldErrors) {
    for (path, message) in ramp_analysis::validate::validate_metrics(metrics) {
        errors.push(format!("spec.{path}"), message);
    }
    for (i, metric) in metrics.iter().enumerate() {
        if let Some(job) = &metric.provider.job {
            check_pod_template(
                &job.spec.template,
                &format!("spec.metrics[{i}].provider.job.spec.template"),
                true,
                errors,
            );
        }
    }
}

fn check_args(args: Option<&[Argument]>, must_resolve: bool, errors: &mut FieldErrors) {
    let mut names = BTreeSet::new();
    for (i, arg) in args.unwrap_or_default().iter().enumerate() {
        let path = format!("spec.args[{i}]");
        if arg.name.is_empty() {
            errors.push(format!("{path}.name"), "required");
        } else if !names.insert(arg.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate argument {:?}", arg.name),
            );
        }
        if let Some(from) = &arg.value_from {
            if arg.value.is_some() {
                errors.push(
                    format!("{path}.valueFrom"),
                    "set value or valueFrom, not both",
                );
            }
            if from.secret_key_ref.is_some() == from.field_ref.is_some() {
                errors.push(
                    format!("{path}.valueFrom"),
                    "set exactly one of secretKeyRef and fieldRef",
                );
            }
            if let Some(field_ref) = &from.field_ref
                && let Err(message) = crate::fieldpath::check_field_path(&field_ref.field_path)
            {
                errors.push(format!("{path}.valueFrom.fieldRef.fieldPath"), message);
            }
        } else if must_resolve && arg.value.is_none() {
            errors.push(
                format!("{path}.value"),
                format!(
                    "argument {:?} has no value: set value or valueFrom",
                    arg.name
                ),
            );
        }
    }
}

fn check_rules(
    dry_run: Option<&[DryRun]>,
    retention: Option<&[MeasurementRetention]>,
    errors: &mut FieldErrors,
) {
    for (i, rule) in dry_run.unwrap_or_default().iter().enumerate() {
        if let Err(error) = regex::Regex::new(&rule.metric_name) {
            errors.push(
                format!("spec.dryRun[{i}].metricName"),
                format!("not a regular expression: {error}"),
            );
        }
    }
    for (i, rule) in retention.unwrap_or_default().iter().enumerate() {
        if let Err(error) = regex::Regex::new(&rule.metric_name) {
            errors.push(
                format!("spec.measurementRetention[{i}].metricName"),
                format!("not a regular expression: {error}"),
            );
        }
        if rule.limit < 0 {
            errors.push(
                format!("spec.measurementRetention[{i}].limit"),
                "must be greater than or equal to 0",
            );
        }
    }
}
