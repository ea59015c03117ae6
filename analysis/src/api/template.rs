//! `AnalysisTemplate` (namespaced) and `ClusterAnalysisTemplate` (cluster-scoped): reusable
//! metric definitions that Rollouts and users instantiate as AnalysisRuns.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{AnalysisTemplateRef, Argument, DryRun, MeasurementRetention, Metric};

/// What a template declares: metrics, the arguments they use, and other templates it is
/// composed of.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    doc = "Metrics and arguments that Rollouts instantiate as AnalysisRuns.",
    namespaced,
    shortname = "at",
    category = "argoproj",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    pub metrics: Option<Vec<Metric>>,
    pub args: Option<Vec<Argument>>,
    pub dry_run: Option<Vec<DryRun>>,
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Other templates whose metrics and args this one includes.
    pub templates: Option<Vec<AnalysisTemplateRef>>,
}

/// The cluster-scoped twin of [`AnalysisTemplateSpec`]; the same fields.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    doc = "A cluster-scoped AnalysisTemplate, usable from every namespace.",
    shortname = "cat",
    category = "argoproj",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterAnalysisTemplateSpec(pub AnalysisTemplateSpec);

impl std::ops::Deref for ClusterAnalysisTemplateSpec {
    type Target = AnalysisTemplateSpec;
    fn deref(&self) -> &AnalysisTemplateSpec {
        &self.0
    }
}
