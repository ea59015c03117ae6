//! Experiment rules. Ramp does not run Experiments yet, but reads and checks them so that
//! manifests holding them lint cleanly or fail for a real reason.

use std::collections::BTreeSet;

use crate::api::Experiment;

use super::pod::{check_optional_pod_template, check_selector, selector_matches};
use super::{FieldError, FieldErrors};

pub fn validate_experiment(experiment: &Experiment) -> Vec<FieldError> {
    let mut errors = FieldErrors::default();
    let spec = &experiment.spec;
    if spec.templates.is_empty() {
        errors.push(
            "spec.templates",
            "required: an experiment needs at least one template",
        );
    }
    let mut names = BTreeSet::new();
    for (i, template) in spec.templates.iter().enumerate() {
        let path = format!("spec.templates[{i}]");
        if template.name.is_empty() {
            errors.push(format!("{path}.name"), "required");
        } else if !names.insert(template.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate template name {:?}", template.name),
            );
        }
        if template.replicas.is_some_and(|r| r < 0) {
            errors.push(
                format!("{path}.replicas"),
                "must be greater than or equal to 0",
            );
        }
        check_selector(&template.selector, &format!("{path}.selector"), &mut errors);
        let labels = template
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector_matches(&template.selector, &labels) {
            errors.push(
                format!("{path}.template.metadata.labels"),
                "`selector` does not match template `labels`",
            );
        }
        check_optional_pod_template(&template.template, &format!("{path}.template"), &mut errors);
    }
    if let Some(duration) = &spec.duration
        && let Err(error) = ramp_analysis::duration::parse_duration(duration)
    {
        errors.push("spec.duration", error.to_string());
    }
    let mut analysis_names = BTreeSet::new();
    for (i, analysis) in spec.analyses.iter().flatten().enumerate() {
        let path = format!("spec.analyses[{i}]");
        if !analysis_names.insert(analysis.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate analysis name {:?}", analysis.name),
            );
        }
        if analysis.template_name.is_empty() {
            errors.push(format!("{path}.templateName"), "required");
        }
    }
    errors.into_vec()
}
